"""The web page in a real headless Chromium against a real server (uvicorn on loopback): real
knowledge base, real bundled embedder and language model, real keys; nothing mocked.

One server for the module. Each test signs in with a key through the page's key field, as a
person would, and drives the page only through what it shows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser import severe_console_errors
from live import serving, small_lab, tenant_home
from ragtune.config import ServiceSettings
from ragtune.service import KeyStore
from ragtune.service.app import create_app

pytestmark = pytest.mark.slow

WAIT = 180  # seconds for an answer: the model generates on a CPU shared with other work
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "checklists"

TENANT_DOCS = {
    "acme": {"acme-sla.md": "# Acme SLA\n\nAcme's support replies within 17 minutes on the "
                            "Platinum plan. Acme invoices are due in 45 days."},
    "globex": {"globex-sla.md": "# Globex SLA\n\nGlobex support replies within 93 minutes on "
                                "the Titanium plan. Globex invoices are due in 12 days."},
    # hostile text: shown as text, it is harmless; inserted as HTML it would load an image
    "": {"holidays.md": "# Holidays\n\nThe office is closed on the first of May. "
                        "<img src=\"/pwned.png\" id=\"pwned\"> <b>Bold?</b>"},
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[dict[str, Any]]:
    """One served app for the module, in its own data home pinned like conftest's (float32):
    a knowledge base with one document per tenant and a public one, a lab report per tenant,
    keys, and the models loaded (`/readyz`) before the first test."""
    from ragtune.lab.report import write_report

    root = tmp_path_factory.mktemp("web")
    home = root / "home"
    settings, kb = tenant_home(root, model_cache, TENANT_DOCS, ServiceSettings(
        requests_per_minute=10_000, burst=1_000))
    write_report(small_lab("acme lab", ["acme"]), home / "labs" / "acme-lab")
    write_report(small_lab("globex lab", ["globex"]), home / "labs" / "globex-lab")
    keys = KeyStore.open(settings)
    tokens = {"acme": keys.create(["read"], groups=["acme"], name="acme reader")[0],
              "acme-writer": keys.create(["read", "ingest"], groups=["acme"],
                                         name="acme writer")[0],
              "admin": keys.create(["admin"], name="ops")[0]}
    app = create_app(settings, keys)
    with serving(app) as base_url:
        deadline = time.monotonic() + 300
        while httpx.get(f"{base_url}/readyz").status_code != 200:
            if time.monotonic() > deadline:
                pytest.fail("the service never became ready")
            time.sleep(0.5)
        yield {"url": base_url, "tokens": tokens, "kb": kb, "root": root, "app": app}
    kb.close()


def wait_for(driver: Any, condition: Any, timeout: float = 20, message: str = "") -> Any:
    """`condition(driver)` once truthy; an element the page replaced meanwhile (a table
    redrawn) means "look again"."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,)
                         ).until(condition, message)


def visible_text(driver: Any, selector: str) -> str:
    """The element's text once it is shown and has some (waits for both)."""
    from selenium.webdriver.common.by import By

    def shown(d: Any) -> str | bool:
        found = d.find_elements(By.CSS_SELECTOR, selector)
        return bool(found) and found[0].is_displayed() and found[0].text.strip() or False

    return wait_for(driver, shown, message=f"{selector} never showed text")


def sign_in(driver: Any, url: str, token: str) -> None:
    """Open the page with nothing remembered, paste the key, and wait for who it is."""
    from selenium.webdriver.common.by import By

    severe_console_errors(driver)  # drop what earlier pages left
    driver.get(f"{url}/")
    driver.execute_script("localStorage.clear()")
    driver.refresh()
    assert not driver.find_element(By.ID, "app").is_displayed()  # nothing before a key
    field = driver.find_element(By.ID, "api-key")
    field.send_keys(token)
    driver.find_element(By.ID, "key-use").click()
    key_id = token.split("_")[1]
    wait_for(driver, lambda d: key_id in d.find_element(By.ID, "whoami").text,
             message="the page never showed who the key is")
    assert driver.execute_script("return localStorage.getItem('ragtune.key')") == token


def open_tab(driver: Any, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, f"tab-{name}").click()
    wait_for(driver, lambda d: d.find_element(By.ID, f"panel-{name}").is_displayed())


def test_ask_streams_the_answer_and_a_citation_opens_its_passage(browser, site) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, site["url"], site["tokens"]["acme"])
    tabs = [t.text for t in browser.find_elements(By.CSS_SELECTOR, '[role="tab"]')
            if t.is_displayed()]
    assert tabs == ["Ask", "Documents", "Checklist", "Reports"]  # no traces: not an admin key
    # Record every state the answer area goes through (the streamed draft comes and goes).
    browser.execute_script(
        "window.answerStates = [];"
        "new MutationObserver(() => window.answerStates.push("
        "  document.getElementById('answer').dataset.state)"
        ").observe(document.getElementById('answer'), {attributes: true});")
    browser.find_element(By.ID, "question").send_keys(
        "Within how many minutes does Acme support reply?")
    browser.find_element(By.ID, "ask-button").click()

    def settled(d: Any) -> str | bool:
        state = d.find_element(By.ID, "answer").get_attribute("data-state")
        return state if state in ("final", "refused", "failed") else False

    assert wait_for(browser, settled, WAIT, "no answer came") == "final", \
        browser.find_element(By.ID, "answer").text
    states = browser.execute_script("return window.answerStates")
    assert "drafting" in states, states  # the model's text was shown while it came
    answer = browser.find_element(By.ID, "answer")
    assert "17" in answer.text
    cites = answer.find_elements(By.CSS_SELECTOR, "button.cite")
    assert cites, f"the answer cites nothing: {answer.text!r}"
    listed = browser.find_elements(By.CSS_SELECTOR, "#citations button.cite-item")
    assert listed and "Acme SLA" in listed[0].text

    # verified before it was shown: each claim with its evidence
    title = browser.find_element(By.ID, "evidence-title").text
    assert "every claim is supported" in title, title
    claims = browser.find_elements(By.CSS_SELECTOR, "#evidence li")
    assert claims and all("not supported" not in c.text for c in claims)

    cites[0].click()
    passage = visible_text(browser, "#passage .passage-text")
    assert "17 minutes on the Platinum plan" in passage
    # the supporting sentence is highlighted in the passage viewer
    marks = browser.find_elements(By.CSS_SELECTOR, "#passage mark.evidence")
    assert marks and "17 minutes" in marks[0].text, passage
    panel = browser.find_element(By.ID, "passage").text
    assert "Acme SLA" in panel and "acme-sla.md" in panel and "version 1" in panel
    assert "null" not in panel and "undefined" not in panel
    assert cites[0].get_attribute("aria-pressed") == "true"
    assert severe_console_errors(browser) == []


def test_documents_reports_and_checklist_follow_the_keys_groups(browser, site) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from ragtune.lab.checklist import QUESTIONS, assess, load_answers

    sign_in(browser, site["url"], site["tokens"]["acme"])
    open_tab(browser, "documents")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#documents tbody tr"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#documents tbody tr")
    titles = sorted(r.find_element(By.CSS_SELECTOR, "td").text for r in rows)
    assert titles == ["Acme SLA", "Holidays"]  # never the other tenant's
    assert "Globex" not in browser.find_element(By.ID, "panel-documents").text
    assert not browser.find_element(By.ID, "upload-form").is_displayed()  # a read-only key
    assert not browser.find_elements(By.CSS_SELECTOR, "#documents button.danger")

    # A document id is an absolute path ("/tmp/.../holidays.md"): it must survive the URL.
    holidays = next(r for r in rows if r.text.startswith("Holidays"))
    holidays.find_element(By.CSS_SELECTOR, "button.link").click()
    text = visible_text(browser, "#document-view .document-text")
    assert '<img src="/pwned.png" id="pwned">' in text  # shown as text, never as markup
    assert browser.find_elements(By.ID, "pwned") == []
    view = browser.find_element(By.ID, "document-view").text
    assert "holidays.md" in view and "added" in view  # facts and history

    open_tab(browser, "reports")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#reports button.card"))
    cards = browser.find_elements(By.CSS_SELECTOR, "#reports button.card")
    assert [c.get_attribute("data-report") for c in cards] == ["acme-lab"]
    cards[0].click()
    frame = wait_for(browser, lambda d: d.find_element(By.ID, "report-frame").is_displayed()
                     and d.find_element(By.ID, "report-frame"))
    assert frame.get_attribute("src").startswith("blob:")
    assert browser.find_element(By.ID, "report-open").get_attribute("href") == \
        frame.get_attribute("src")
    browser.switch_to.frame(frame)
    try:
        wait_for(browser, lambda d: "acme lab" in d.find_element(By.TAG_NAME, "body").text,
                 message="the report never showed in its frame")
    finally:
        browser.switch_to.default_content()

    open_tab(browser, "checklist")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "fieldset.question"))
             == len(QUESTIONS))
    evidence = Select(browser.find_element(By.ID, "assess-report"))
    assert [o.get_attribute("value") for o in evidence.options] == ["", "acme-lab"]
    answers = load_answers(EXAMPLES / "rag-first.yaml")
    for question in QUESTIONS:
        value = getattr(answers, question.key)
        index = next(i for i, c in enumerate(question.choices) if c.value == value)
        browser.find_element(By.CSS_SELECTOR, f'label[for="q-{question.key}-{index}"]').click()
    browser.find_element(By.ID, "assess-button").click()
    visible_text(browser, "#assessment .verdict")
    box = browser.find_element(By.ID, "assessment")
    expected = assess(answers)
    assert box.get_attribute("data-recommendation") == expected.recommendation == "rag"
    assert expected.reasons[0] in box.text
    assert severe_console_errors(browser) == []


def test_a_writer_uploads_and_deletes_through_the_page(browser, site) -> None:
    from selenium.webdriver.common.by import By

    upload = site["root"] / "upload" / "acme-pricing.md"
    upload.parent.mkdir()
    upload.write_text("# Acme pricing\n\nThe Platinum plan costs 240 euros a month.",
                      encoding="utf-8")
    sign_in(browser, site["url"], site["tokens"]["acme-writer"])
    open_tab(browser, "documents")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#documents tbody tr"))
    browser.find_element(By.ID, "upload-files").send_keys(str(upload))
    browser.find_element(By.ID, "upload-groups").send_keys("acme")
    browser.find_element(By.ID, "upload-button").click()
    report = wait_for(browser, lambda d: "1 added" in d.find_element(By.ID, "upload-report").text
                      and d.find_element(By.ID, "upload-report").text, 60,
                      "the upload report never showed")
    assert "0 updated" in report

    def row(d: Any) -> Any:
        found = [r for r in d.find_elements(By.CSS_SELECTOR, "#documents tbody tr")
                 if r.text.startswith("Acme pricing")]
        return found[0] if found else False

    added = wait_for(browser, row, message="the uploaded document is not listed")
    assert "acme" in added.text
    added.find_element(By.CSS_SELECTOR, "button.danger").click()
    wait_for(browser, lambda d: d.switch_to.alert).accept()
    wait_for(browser, lambda d: not row(d), message="the deleted document is still listed")
    assert [d.title for d in site["kb"].documents() if d.title == "Acme pricing"] == []
    assert severe_console_errors(browser) == []

    # Into another tenant's group: refused, and the page says why where it is seen.
    browser.find_element(By.ID, "upload-files").send_keys(str(upload))
    groups = browser.find_element(By.ID, "upload-groups")
    groups.clear()
    groups.send_keys("globex")
    browser.find_element(By.ID, "upload-button").click()
    error = visible_text(browser, '#error[role="alert"]')
    assert "may only write into its groups" in error and "403" in error
    assert not row(browser)
    logged = severe_console_errors(browser)  # the browser logs the refused request itself
    assert len(logged) == 1 and "/v1/documents/files" in logged[0] and "403" in logged[0]


def test_an_admin_browses_traces_and_opens_one_with_its_judged_claims(browser, site) -> None:
    from selenium.webdriver.common.by import By

    question = "Within how many minutes does Acme support reply?"
    httpx.post(f"{site['url']}/v1/ask", json={"question": question}, timeout=120,
               headers={"Authorization": f"Bearer {site['tokens']['acme']}"}).raise_for_status()
    site["app"].state.recorder.flush()
    driver = browser
    sign_in(driver, site["url"], site["tokens"]["admin"])
    open_tab(driver, "traces")
    below = driver.find_element(By.ID, "traces-below")
    below.clear()  # empty: every trace
    driver.find_element(By.ID, "traces-button").click()
    row = wait_for(driver, lambda d: next((r for r in d.find_elements(
        By.CSS_SELECTOR, "#traces tbody tr[data-trace]") if question in r.text), False),
        message="the traced question never appeared")
    trace_id = row.get_attribute("data-trace")
    stored = site["kb"].store.get_trace(trace_id)
    assert stored is not None and stored.question == question
    row.click()
    detail = visible_text(driver, "#trace-view")
    assert stored.answer in detail
    for passage in stored.detail["passages"]:
        assert passage["doc_id"] in detail
    assert stored.detail["claims"], "the traced answer was refused: nothing judged"
    for claim in stored.detail["claims"]:
        assert claim["claim"] in detail  # the judged claims, each marked supported or not
    assert severe_console_errors(driver) == []
