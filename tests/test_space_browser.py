"""The staged Space, run as ``python app.py`` outside the repo, driven by headless Chromium.

A user's path: open the page, pick "no instruction", type a query, click Search, read the
table. The query copies one document exactly, so with the random tiny model it must rank
first (cosine 1.0). Screenshots are kept under build/test-artifacts/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.cli import run_stage
from space.__main__ import main as STAGE
from tests.space_helpers import (
    CHROMEDRIVER,
    CHROMIUM,
    headless_chromium,
    keep_artifact,
    serve_staged_app,
    write_local_dataset,
)

pytestmark = pytest.mark.slow

DATASET_DOCUMENTS = [
    "The river carries the city's history to the ocean.",
    "Die Zugspitze ist der höchste Berg Deutschlands.",
    "La ville est construite au bord de la rivière.",
    "Este río nace en la montaña y cruza la ciudad.",
    "Это вопрос о погоде в горах.",
]
SCRIPT_DOCUMENT = (
    '<script>window.pwned = 1</script><b id="injected">bold</b>'
    '<img src=x onerror="window.pwned = 2">'
)
WAIT_S = 60
NO_INSTRUCTION_LABEL = "No instruction (embed the query as is)"


def _needs_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"headless browser test needs {', '.join(missing)}: "
            "apt-get install -y chromium chromium-driver"
        )


def _visible_rows(driver) -> list[list[str]]:
    """Result rows as the user sees them: gradio 6 draws a virtual grid of div rows (its
    table element holds only the header and a hidden row that sizes the columns)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    rows = []
    try:
        for row in driver.find_elements(By.CSS_SELECTOR, "#results div[role=row]"):
            cells = row.find_elements(By.CSS_SELECTOR, "[role=gridcell]")
            if len(cells) == 3 and row.is_displayed():
                rows.append([cell.text.strip() for cell in cells])
    except StaleElementReferenceException:
        return []
    return rows


def _first_result(driver) -> str:
    rows = [row for row in _visible_rows(driver) if row[0] == "1"]
    return rows[0][2] if rows else ""


def _set_text(element, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(text)


def _wait_for(driver, tmp_path: Path, what: str, condition) -> None:
    """Wait for ``condition``; on a timeout keep a screenshot and the app log to look at."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, WAIT_S).until(condition)
    except TimeoutException:
        shot = tmp_path / "space-failure.png"
        driver.save_screenshot(str(shot))
        log_tail = (tmp_path / "app.log").read_text(encoding="utf-8", errors="replace")[-2000:]
        pytest.fail(
            f"timed out waiting for {what}; screenshot {keep_artifact(shot)}\n"
            f"first result: {_first_result(driver)!r}\napp log:\n{log_tail}"
        )


def test_a_browser_searches_the_staged_space(
    write_config, tmp_path: Path, tiny_st_model_dir: Path
) -> None:
    _needs_browser()
    from selenium.webdriver.common.by import By

    config = write_config(space={"title": "Browser test", "sample_documents": 20})
    assert run_stage("space", STAGE, ["--config", str(config)]) == 0
    dataset_dir = write_local_dataset(tmp_path / "release-data", DATASET_DOCUMENTS)
    env = {"MODEL_ID": str(tiny_st_model_dir), "DATASET_ID": str(dataset_dir)}
    with (
        serve_staged_app(tmp_path / "build" / "space", env, tmp_path / "app.log") as served,
        headless_chromium() as driver,
    ):
        driver.get(served.url)
        _wait_for(driver, tmp_path, "the page", lambda d: d.find_elements(By.ID, "search-button"))
        instruction = driver.find_element(By.CSS_SELECTOR, "#instruction input")
        assert instruction.get_attribute("value").startswith("query: ")
        instruction.click()
        _set_text(instruction, "No instruction")
        # The option list is filtered after the keystrokes land; click the option once it
        # is drawn, then wait for the choice to settle (Enter raced the filter in CI).
        option = f"#instruction li.item[aria-label='{NO_INSTRUCTION_LABEL}']"
        _wait_for(
            driver,
            tmp_path,
            "the no-instruction option",
            lambda d: d.find_elements(By.CSS_SELECTOR, option),
        )
        driver.find_element(By.CSS_SELECTOR, option).click()
        _wait_for(
            driver,
            tmp_path,
            "the no-instruction choice",
            lambda d: instruction.get_attribute("value") == NO_INSTRUCTION_LABEL,
        )

        query = driver.find_element(By.CSS_SELECTOR, "#query-box textarea")
        query.send_keys(DATASET_DOCUMENTS[1])
        driver.find_element(By.CSS_SELECTOR, "#search-button").click()
        _wait_for(
            driver,
            tmp_path,
            "the duplicated document on top",
            lambda d: _first_result(d) == DATASET_DOCUMENTS[1],
        )
        status = driver.find_element(By.CSS_SELECTOR, "#status").text
        assert status.startswith("Top 5 of 5 documents")
        rows = _visible_rows(driver)
        assert [row[0] for row in rows] == ["1", "2", "3", "4", "5"]
        assert sorted(row[2] for row in rows) == sorted(DATASET_DOCUMENTS)
        scores = [float(row[1]) for row in rows]
        assert scores == sorted(scores, reverse=True) and scores[0] > 0.999
        first_shot = tmp_path / "space-search.png"
        driver.save_screenshot(str(first_shot))
        keep_artifact(first_shot)

        driver.find_element(By.XPATH, "//label[.//span[text()='Paste documents']]").click()
        pasted = driver.find_element(By.CSS_SELECTOR, "#pasted-box textarea")
        _set_text(pasted, "\n".join([*DATASET_DOCUMENTS[:3], SCRIPT_DOCUMENT]))
        _set_text(query, SCRIPT_DOCUMENT)
        driver.find_element(By.CSS_SELECTOR, "#search-button").click()
        _wait_for(
            driver,
            tmp_path,
            "the markup document on top",
            lambda d: _first_result(d) == SCRIPT_DOCUMENT,
        )
        assert driver.execute_script("return window.pwned === undefined")
        assert not driver.find_elements(By.CSS_SELECTOR, "#injected")
        assert not driver.find_elements(By.CSS_SELECTOR, "#results script, #results img")
        _wait_for(
            driver,
            tmp_path,
            "the markup note",
            lambda d: "shown as plain text" in d.find_element(By.ID, "status").text,
        )
        markup_shot = tmp_path / "space-markup-as-text.png"
        driver.save_screenshot(str(markup_shot))
        keep_artifact(markup_shot)

        _set_text(query, " ")
        driver.find_element(By.CSS_SELECTOR, "#search-button").click()
        _wait_for(
            driver,
            tmp_path,
            "the empty-query message",
            lambda d: "Type a query first." in d.find_element(By.TAG_NAME, "body").text,
        )
        assert pasted.get_attribute("value").splitlines()[-1] == SCRIPT_DOCUMENT
        assert _first_result(driver) == SCRIPT_DOCUMENT
