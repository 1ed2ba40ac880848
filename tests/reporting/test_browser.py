"""The MLflow UI in headless Chromium: `ablate ui` on a free loopback port, against the store
of a tiny real sweep. The experiment page lists the study's parent run with its child runs,
and the dashboard artifact renders with its panels inside the UI's artifact viewer.

Needs Debian's `chromium` + `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver;
`.ci/run` installs them) and the `selenium` package (the `dev` extra); skips otherwise.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from ablate.reporting.dashboard_spec import load_spec
from tests.reporting import ROOT_DASHBOARDS, STUDY, ablate, tiny_study_home

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver): "
                "browser test skipped", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver",
                                reason="selenium not installed (pip install -e '.[dev]')")

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def _killed_run(home, experiment: str, arm: str, revision: int, value: float) -> None:
    """A run the way an interrupted trial leaves it: KILLED, with a (bad) val/loss."""
    from tests.mlflow_helpers import store

    client = store(home)
    exp = client.get_experiment_by_name(experiment).experiment_id
    run = client.create_run(exp, run_name="killed", tags={
        "ablate.trial": "99", "ablate.revision": str(revision), "ablate.study": experiment})
    client.log_param(run.info.run_id, "arm", arm)
    client.log_metric(run.info.run_id, "val/loss", value)
    client.set_terminated(run.info.run_id, status="KILLED")


def _browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=opts)


def _wait_http(url: str, proc, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`ablate ui` exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} not up after {timeout}s")


def test_mlflow_ui_shows_runs_and_the_dashboard(tmp_path, monkeypatch):
    from ablate.tracking.server import free_port
    from tests.conftest import TINY
    from tests.mlflow_helpers import all_runs, store

    # a copy of the shared study's store (other tests count its runs), plus the quickstart
    home = tmp_path / "ablate-runs"
    shutil.copytree(tiny_study_home(), home)
    monkeypatch.setenv("ABLATE_HOME", str(home))
    quickstart = str(ROOT_DASHBOARDS.parent / "sweeps" / "quickstart.yaml")
    assert ablate("sweep", quickstart, *TINY) == 0
    # a second revision (longer runs), and a killed run among its dense runs: neither the old
    # revision nor the killed run may enter an arm's mean in the saved view
    longer = [o for o in TINY if not o.startswith("trainer.max_steps")] + ["trainer.max_steps=9"]
    assert ablate("sweep", quickstart, *longer, "--extend") == 0
    _killed_run(home, "quickstart", "dense", revision=2, value=99.0)
    port = free_port()
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no background job workers
    server = subprocess.Popen([sys.executable, "-m", "ablate", "ui", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    driver = None
    try:
        # while the server boots: the dashboard (logged to the parent run) and the browser
        assert ablate("dashboard", str(ROOT_DASHBOARDS / "moe_overview.yaml"), "--study", STUDY,
                      "--out", str(tmp_path / "d.html")) == 0
        runs = all_runs(home)
        parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags
                      and r.info.run_name == STUDY)
        children = [r.info.run_name for r in runs
                    if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert len(children) == 4
        driver = _browser()
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/health", server)
        wait = WebDriverWait(driver, 60)

        # the experiment's runs: the parent, expanded to its children
        driver.get(f"{base}/#/experiments/{parent.info.experiment_id}/runs")
        expand = wait.until(lambda d: d.find_element(
            By.CSS_SELECTOR, 'button[data-component-id*="runnamecellrenderer"]'))
        assert parent.info.run_name in driver.find_element(By.TAG_NAME, "body").text
        expand.click()
        wait.until(lambda d: all(c in d.find_element(By.TAG_NAME, "body").text for c in children))
        driver.save_screenshot("/tmp/ablate-browser-runs.png")

        # the link `ablate ui` and `ablate sweep` print, for the quickstart's study (its own
        # sweep file, at the tiny size): the model-training runs view saved with the study
        # (store.runs_view), the trials grouped by arm with their repeats pooled (the
        # seed-free `arm` param), sorted by the objective, its first metric column
        from ablate.tracking.store import ui_url

        quick = next(e for e in store(home).search_experiments() if e.name == "quickstart")
        driver.get(ui_url(quick.experiment_id, base))
        arms = ("dense", "moe-E4-k1", "moe-E8-k1", "moe-E8-k1-fine2")
        wait.until(lambda d: all(f"Group: {a}\n2" in d.find_element(By.TAG_NAME, "body").text
                                 for a in arms))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Model training" in body and "Sort: val/loss" in body and "Group by: arm" in body
        # the newest revision's FINISHED trials, 2 seeds per arm: not the parent, not the
        # killed run, not revision 1
        assert "8 matching runs" in body
        from ablate.reporting.collect import load_study
        from ablate.reporting.compare import compare

        driver.save_screenshot("/tmp/ablate-browser-quickstart-groups.png")
        # each group's average is ablate compare's mean of the arm;
        # the old revision's means are nowhere (nor the killed run's 99, which would pull
        # the dense group's average above 36)
        new = compare(load_study("quickstart")).rows
        old = compare(load_study("quickstart", revision=1)).rows
        cells = [c.text for c in driver.find_elements(By.CSS_SELECTOR, '[role="gridcell"]')]
        def shown(mean: float) -> str:  # the UI cuts a number after 6 decimals
            return f"{mean:.12f}"[:8]

        for r in new:
            assert any(c.startswith(shown(r.summary.mean)) for c in cells), (r.arm, cells)
        for r in old:
            assert not any(c.startswith(shown(r.summary.mean)) for c in cells), r.arm
        headers = [h.text for h in driver.find_elements(By.CSS_SELECTOR, '[role="columnheader"]')
                   if h.text]
        metric_cols = [h for h in headers if "/" in h]
        assert metric_cols and metric_cols[0] == "val/loss", headers
        driver.save_screenshot("/tmp/ablate-browser-quickstart-by-arm.png")

        # the dashboard artifact, rendered by the UI's HTML viewer (a sandboxed iframe)
        driver.get(f"{base}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
                   "/artifacts/dashboards/moe_overview.html")
        frame = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "iframe"))
        driver.switch_to.frame(frame)
        kinds = {"summary", "curves", "final", "budgets", "tuning", "pareto", "expert_load",
                 "load_over_training", "routing", "optuna_importances", "optuna_parallel",
                 "optuna_history", "runs"}
        n_panels = len(load_spec(ROOT_DASHBOARDS / "moe_overview.yaml").panels)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "section.panel")) == n_panels)
        sections = driver.find_elements(By.CSS_SELECTOR, "section.panel")
        assert {s.get_attribute("data-kind") for s in sections} == kinds
        # plotly drew every figure (it adds .js-plotly-plot and an svg when it renders)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR,
                                                 ".js-plotly-plot .main-svg")) >= 9)
        for s in sections:
            if s.get_attribute("data-kind") in ("summary", "runs"):
                assert s.find_elements(By.CSS_SELECTOR, "table tbody tr"), (
                    s.get_attribute("data-kind"))
            elif s.get_attribute("data-kind") in ("budgets", "tuning"):  # the tiny study has
                assert s.find_elements(By.CSS_SELECTOR, ".note"), s.get_attribute("data-kind")
            else:
                assert s.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"), (
                    s.get_attribute("data-kind"))
        assert "moe-E4" in driver.find_element(By.TAG_NAME, "body").text
        driver.switch_to.default_content()
        driver.save_screenshot("/tmp/ablate-browser-dashboard.png")
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
