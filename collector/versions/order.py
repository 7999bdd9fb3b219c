"""How versions sort: as versions, not as text. Pure.

`1.10.0` comes after `1.9.0`, `2` after `1.9`, `1` equals `1.0` (missing parts are zero),
and the unversioned group (`""`) sorts before every version. A leading `v` is ignored.
Versions that are not numbers (`beta`, `2024-01`, `1.2.0-rc1`) sort after the numeric
part they start with, their text compared piece by piece, numbers as numbers."""
import re
from functools import lru_cache

UNVERSIONED = ""
_PIECES = re.compile(r"\d+|[^\d.\-_+]+")


@lru_cache(maxsize=4096)
def version_key(version):
    """A sort key: tuples of (0, number) for numeric pieces and (1, text) for others, with
    trailing zero pieces dropped so that 1 == 1.0 == 1.0.0."""
    if version is None or version == UNVERSIONED:
        return (0, ())
    text = version[1:] if len(version) > 1 and version[0] in "vV" and version[1].isdigit() else version
    pieces = [(0, int(p)) if p.isdigit() else (1, p.lower()) for p in _PIECES.findall(text)]
    while pieces and pieces[-1] == (0, 0):
        pieces.pop()
    return (1, tuple(pieces))


def sort_versions(versions):
    """Versions oldest first; ties (1 and 1.0) keep their text order."""
    return sorted(versions, key=lambda v: (version_key(v), v or ""))


def newest(versions):
    """The newest real version, or UNVERSIONED when only unversioned events were seen."""
    real = [v for v in versions if v]
    return sort_versions(real)[-1] if real else UNVERSIONED


def label(version):
    return f"v{version}" if version else "unversioned"
