"""In a real browser against the real web process (daphne) and a running collector: the
live tail shows what is published, honours its filter, pauses, clears, survives the
server or the channel layer going away (the missed events come back, marked), and the
overview's counters move without a reload."""
import pytest
from channels_redis.core import RedisChannelLayer
from playwright.sync_api import expect

from collector.deadletters import capture
from collector.live import forwarder as live
from collector.models import DeadLetter, Event
from runner.servers import Redis, free_port
from tests.conftest import RunningCollector, browser_login, nats_publish, wait_until
from tests.live.conftest import Daphne, login_by_cookie, unique_prefix

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def publish(nats_url, subjects, body=b'{"order": "A-42"}'):
    nats_publish(nats_url, [(subject, body, None) for subject in subjects])


def open_live(page, web, query=""):
    page.goto(f"{web.url}/live/{query}")
    page.wait_for_selector("#live[data-state=live]")


def rows(page):
    return page.locator("#live-rows tbody tr")


def test_a_user_sees_a_published_event_appear_and_a_filtered_out_one_never_does(
        web, live_collector, charlie, page, nats_url):
    prefix = unique_prefix()
    browser_login(page, web, "charlie", "charlie-password")
    page.click("nav.mainnav a:text('Live')")
    page.wait_for_url("**/live/**")
    page.fill("input[name=subject]", f"{prefix}.orders.*")
    page.click("#live-filters button[type=submit]")
    page.wait_for_url(f"**/live/?subject={prefix}.orders.*&**")
    page.wait_for_selector("#live[data-state=live]")

    publish(nats_url, [f"{prefix}.payments.captured", f"{prefix}.orders.created", f"{prefix}.orders.eu.created"])
    page.wait_for_selector(f"#live-rows tbody tr:has-text('{prefix}.orders.created')")
    page.wait_for_selector("#live-rate:has-text('/s matching')")
    page.wait_for_timeout(1500)  # the others would have arrived by now
    assert rows(page).count() == 1
    text = page.inner_text("#live-rows")
    assert "payments" not in text and "orders.eu" not in text

    stored = Event.objects.get(subject=f"{prefix}.orders.created")
    page.click(f"#live-rows a[href='/events/{stored.id}/']")
    page.wait_for_url(f"**/events/{stored.id}/")
    assert f"{prefix}.orders.created" in page.inner_text("main")


def test_paused_the_page_counts_what_arrives_resumed_it_shows_it_and_clear_empties_it(
        web, live_collector, charlie, page, nats_url):
    prefix = unique_prefix()
    login_by_cookie(page, web, charlie)
    open_live(page, web, f"?subject={prefix}.>")
    publish(nats_url, [f"{prefix}.first"])
    page.wait_for_selector(f"#live-rows tbody tr:has-text('{prefix}.first')")
    page.click("#live-pause")
    publish(nats_url, [f"{prefix}.while.paused"] * 3)
    page.wait_for_selector("#live-held:text('3 arrived while paused')")
    assert rows(page).count() == 1
    page.click("#live-pause")
    expect(rows(page)).to_have_count(4)
    page.click("#live-clear")
    assert rows(page).count() == 0


def test_the_page_keeps_at_most_its_rows_dropping_the_oldest(web, live_collector, charlie, page, nats_url):
    prefix = unique_prefix()
    login_by_cookie(page, web, charlie)
    open_live(page, web, f"?subject={prefix}.>&rows=100")
    nats_publish(nats_url, [(f"{prefix}.n{n:03d}", b"{}", None) for n in range(130)])
    page.wait_for_selector(f"#live-rows tbody tr:has-text('{prefix}.n129')")
    expect(rows(page)).to_have_count(100)
    text = page.inner_text("#live-rows tbody")
    assert f"{prefix}.n030" in text and f"{prefix}.n029" not in text, "the 30 oldest went"
    assert page.inner_text("#live-rows tbody tr >> nth=0").count(f"{prefix}.n129") == 1, "newest on top"


def test_when_the_web_server_goes_away_the_page_says_so_and_the_missed_events_appear_marked_after(
        web, live_collector, charlie, page, nats_url):
    prefix = unique_prefix()
    login_by_cookie(page, web, charlie)
    open_live(page, web, f"?subject={prefix}.>")
    publish(nats_url, [f"{prefix}.before"])
    page.wait_for_selector(f"#live-rows tbody tr:has-text('{prefix}.before')")
    page.wait_for_timeout(1200)  # a stats message carries the cursor

    web.stop()
    try:
        page.wait_for_selector("#live[data-state=interrupted]")
        assert "interrupted" in page.inner_text("#live-status")
        publish(nats_url, [f"{prefix}.while.down"] * 3)
        wait_until(lambda: Event.objects.filter(subject=f"{prefix}.while.down").count() == 3, 10, "stored meanwhile")
    finally:
        web.start()
    page.wait_for_selector("#live[data-state=live]", timeout=30_000)
    expect(page.locator("#live-rows tbody tr.backfilled")).to_have_count(3)
    assert rows(page).count() == 4, "the row it had, once, and the three it missed"
    assert all(f"{prefix}.while.down" in row for row in page.locator("#live-rows tr.backfilled").all_inner_texts())
    assert "backfilled" in page.inner_text("#live-rows tr.backfilled >> nth=0")


def test_with_the_channel_layer_down_ingestion_goes_on_and_the_page_says_the_tail_is_interrupted(
        transactional_db, charlie, page, nats_url, tmp_path):
    redis = Redis(tmp_path / "redis", port=free_port(26379)).start()
    layer = RedisChannelLayer(hosts=[redis.url])
    running = RunningCollector(installs=[lambda collector: live.install(collector, layer=layer)])
    web = Daphne(env={"REDIS_URL": redis.url}).start()
    prefix = unique_prefix()
    try:
        # The collector has beaten once with its live cursor (every 5 s; here at once), so a
        # page that loses its socket before its first batch still has one to resume from.
        wait_until(lambda: running.collector.live.floor is not None, 10, "the forwarder to start")
        running.collector.write_heartbeat()
        login_by_cookie(page, web, charlie)
        open_live(page, web, f"?subject={prefix}.>")
        redis.stop()
        page.wait_for_selector("#live[data-state=interrupted]")
        publish(nats_url, [f"{prefix}.during.outage"] * 5)
        wait_until(lambda: Event.objects.filter(subject__startswith=prefix).count() == 5, 10,
                   "ingestion to go on without the channel layer")
        wait_until(lambda: running.collector.live.interrupted, 10, "the forwarder to notice")
        redis = Redis(tmp_path / "redis", port=redis.port).start()
        expect(page.locator("#live-rows tbody tr.backfilled")).to_have_count(5, timeout=40_000)
        publish(nats_url, [f"{prefix}.after.outage"])
        page.wait_for_selector(f"#live-rows tbody tr:not(.backfilled):has-text('{prefix}.after.outage')",
                               timeout=20_000)
    finally:
        web.stop()
        running.stop()
        redis.stop()


def test_the_overview_counters_and_dead_letter_count_move_without_a_reload(charlie, page, nats_url, web):
    running = RunningCollector(installs=[live.install, capture.install])
    prefix = unique_prefix()
    try:
        login_by_cookie(page, web, charlie)
        page.goto(f"{web.url}/?last=15m")
        loads = []
        page.on("load", lambda _: loads.append(1))
        before = int(page.inner_text("#stat-events").replace(",", ""))
        publish(nats_url, [f"{prefix}.counted"] * 4 + [f"{prefix}.orders.dlq"])
        wait_until(lambda: int(page.inner_text("#stat-events").replace(",", "")) >= before + 5, 15,
                   "the events counter to move")
        wait_until(lambda: DeadLetter.objects.filter(dlq_subject=f"{prefix}.orders.dlq").exists(), 10, "the dead letter")
        expect(page.locator("#stat-dead-letters")).to_have_text("1")
        assert not loads, "updated in place, not by reloading"
    finally:
        running.stop()
