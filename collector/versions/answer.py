"""Status of each version and the answer to "can we stop publishing it?". Pure: it takes
what the readers found (no database), so the page, the API and the tests share one verdict.

Statuses: **current** (the newest version seen), **superseded** (still produced: a newer
version exists and this one was produced in the window), **blocked** (not produced in the
window, but something below still needs it), **safe to retire**, **drifting** (drift was
flagged in the window; it wins over the others), and **unversioned** for the group of
events without a version when the type also has versions.

An old version is safe to retire when, in the window, no producer sent it, every consumer
that processed it has processed the newest version too, and the newest version has no dead
letters; otherwise the blockers say exactly which of these failed."""
from collector.versions.order import label, newest, sort_versions

CURRENT, SUPERSEDED, BLOCKED, SAFE, DRIFTING, UNVERSIONED = (
    "current", "superseded", "blocked", "safe to retire", "drifting", "unversioned")
STATUSES = [CURRENT, SUPERSEDED, BLOCKED, SAFE, DRIFTING, UNVERSIONED]


def ago(moment, now):
    """'3 days ago', '5 min ago', 'just now'."""
    seconds = (now - moment).total_seconds()
    if seconds < 60:
        return "just now"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "min")):
        if seconds >= size:
            amount = int(seconds // size)
            plural = "s" if amount != 1 and unit != "min" else ""
            return f"{amount} {unit}{plural} ago"
    return "just now"


def _names(names):
    names = sorted(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _producer_text(producer):
    versions = sorted({i["service_version"] for i in producer.get("instances", []) if i["service_version"]})
    instances = {i["instance"] for i in producer.get("instances", []) if i["instance"]}
    text = producer["name"] or "an unnamed producer"
    if versions:
        text += "@" + "/".join(versions)
    if instances:
        text += f" ({len(instances)} instance{'s' if len(instances) != 1 else ''})"
    return text


def processed(consumer):
    return bool(consumer.get("processed")) or consumer.get("floor_passed") is not None


def processed_since(consumer):
    moments = [m for m in (consumer.get("first_processed"), consumer.get("floor_passed")) if m is not None]
    return min(moments) if moments else None


def judge(versions, window_start, now, words=True):
    """`versions`: {version: {"produced": messages in the window, "producers": [{"name",
    "last_seen", "instances": [{"service_version", "instance"}]}], "consumers":
    {name: {"processed", "floor_passed", "first_processed", "failed", "dead_letters",
    "last_dead_letter"}}, "drift": drift events in the window}}.
    Returns {version: {"status", "answer": {"safe", "blockers", "text"}}}; without `words`
    only the statuses are meant (the answers' texts are left empty)."""
    order = sort_versions(versions)
    top = newest(order)
    verdicts = {}
    for version in order:
        info = versions[version]
        if version == top:
            status = CURRENT
            answer = {"safe": False, "blockers": [], "text": f"{label(version)} is the newest version: current"}
        elif version == "" and top:
            status = UNVERSIONED
            senders = _names({p["name"] or "an unnamed producer" for p in info["producers"]})
            answer = {"safe": False, "blockers": [],
                      "text": f"events without a version, sent by {senders or 'no known producer'}"}
        else:
            answer = retire(version, top, versions, window_start, now, words)
            status = SAFE if answer["safe"] else (SUPERSEDED if _produced_in(info, window_start) else BLOCKED)
        if info.get("drift"):
            status = DRIFTING
        verdicts[version] = {"status": status, "answer": answer}
    return verdicts


def _blocked(version, top, versions, window_start):
    """Whether anything blocks retiring `version` (what `retire` lists, without the words)."""
    info, newest_info = versions[version], versions[top]
    if info.get("produced") and any(p["last_seen"] >= window_start for p in info["producers"]):
        return True
    if any(processed(c) and name and not processed(newest_info["consumers"].get(name, {}))
           for name, c in info["consumers"].items()):
        return True
    return any(c.get("dead_letters") and c.get("last_dead_letter") and c["last_dead_letter"] >= window_start
               for c in newest_info["consumers"].values())


def _produced_in(info, window_start):
    return bool(info.get("produced")) and any(p["last_seen"] >= window_start for p in info["producers"])


def retire(version, top, versions, window_start, now, words=True):
    """The answer for an old `version` against the newest `top`, in words and as data."""
    info, newest_info = versions[version], versions[top]
    if not words:
        return {"safe": _blocked(version, top, versions, window_start) is False, "blockers": [], "text": ""}
    blockers = []
    for producer in sorted(info["producers"], key=lambda p: p["name"]):
        if info.get("produced") and producer["last_seen"] >= window_start:
            blockers.append({"kind": "producer", "name": producer["name"], "last_seen": producer["last_seen"],
                             "text": f"{_producer_text(producer)} still produces {label(version)} "
                                     f"(last {ago(producer['last_seen'], now)})"})
    users = {name for name, c in info["consumers"].items() if processed(c) and name}
    for name in sorted(users):
        if not processed(newest_info["consumers"].get(name, {})):
            blockers.append({"kind": "consumer", "name": name,
                             "text": f"consumer {name} has never processed {label(top)}"})
    dead = {name: c["dead_letters"] for name, c in newest_info["consumers"].items()
            if c.get("dead_letters") and c.get("last_dead_letter") and c["last_dead_letter"] >= window_start}
    if dead:
        total = sum(dead.values())
        blockers.append({"kind": "dead_letters", "name": top, "count": total, "consumers": sorted(dead),
                         "text": f"{total} dead letter{'s' if total != 1 else ''} on {label(top)} "
                                 f"({_names(n or 'no consumer named' for n in dead)})"})
    last = max(info["producers"], key=lambda p: p["last_seen"], default=None)
    said = (f"last produced {ago(last['last_seen'], now)} by {_producer_text(last)}" if last
            else f"{label(version)} has no known producer")
    if blockers:
        return {"safe": False, "blockers": blockers, "summary": said,
                "text": f"{said}; not safe to retire: " + "; ".join(b["text"] for b in blockers)}
    moved = [name for name in sorted(users) if processed(newest_info["consumers"].get(name, {}))]
    if moved:
        since = min(processed_since(newest_info["consumers"][name]) or now for name in moved)
        both = "both " if len(moved) == 2 else ("all " if len(moved) > 2 else "")
        consumers = (f"consumer{'s' if len(moved) != 1 else ''} {_names(moved)} {both}processed "
                     f"{label(top)} since {since:%a %d %b %H:%M} UTC")
    else:
        consumers = f"no consumer is known to process {label(version)}"
    return {"safe": True, "blockers": [], "text": f"{said}; {consumers} → safe to retire"}
