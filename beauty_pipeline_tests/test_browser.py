"""The Dagster and MLflow UIs in headless Chromium (Debian's, driven by Playwright); screenshots go
to docs/screenshots/ (dagster-asset-graph.png and mlflow-compare.png are in the README).

Runs after the deployment tests on the same stack (conftest.py orders them) and reuses their
classifier runs; run alone, it makes the runs it needs itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.parse
from pathlib import Path

import deploy_support as ds
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.deployment]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ds.REPO / "docs" / "screenshots"
ASSET_GROUPS = ("ingest", "faces", "dataset", "models", "audit", "report")
PARTITION = urllib.parse.quote(ds.CLASSIFIER_PARTITION_KEY)


@pytest.fixture(scope="module")
def page():
    """One headless Chromium page (Debian's binary; Playwright never downloads a browser)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which("chromium"):
        try:
            ds.ensure_system_deps()
        except ds.DeploymentUnavailable as reason:
            pytest.skip(f"Debian chromium is not installed and could not be: {reason}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             headless=True)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.set_default_timeout(30_000)
            yield context.new_page()
            context.close()
        finally:
            browser.close()


def _no_dialog(page) -> None:
    """Nothing (e.g. Dagster's "Join the community" prompt) covers the page."""
    assert page.get_by_text("Join the community", exact=False).count() == 0
    assert page.locator("[role=dialog]").count() == 0


def test_dagster_asset_graph_shows_the_study_assets(deploy_stack, page):
    """The global asset graph, every group expanded: the pipeline's asset nodes are drawn."""
    groups = [g["groupName"] for g in deploy_stack.dagster.graphql(
        "{ assetNodes { groupName } }")["assetNodes"]]
    expanded = ",".join(f"global@global:{g}" for g in dict.fromkeys(groups))
    page.goto(f"{deploy_stack.dagster.url}/asset-groups?"
              + urllib.parse.urlencode({"expanded": expanded}))
    # node labels (long ones, e.g. face_dataset_variant, are middle-truncated in the graph)
    for name in ("ranking", "celebrity_photos", "face_dataset", "fairface_backbone", "classifier"):
        page.get_by_text(name, exact=True).first.wait_for()
    for group in ASSET_GROUPS:
        if group in groups:
            assert page.get_by_text(group, exact=True).count() >= 1, group
    # more room for the graph: collapse the navigation and the asset tree beside the graph
    page.get_by_text("Hide navigation", exact=True).click()
    tree_toggle = page.locator("input[placeholder^='Jump to']").locator("xpath=following::button[1]")
    if tree_toggle.count():
        tree_toggle.first.click()
    page.get_by_text("classifier", exact=True).first.wait_for()
    _no_dialog(page)
    page.screenshot(path=str(SCREENSHOTS / "dagster-asset-graph.png"))


def test_classifier_partition_grid_shows_model_by_background(deploy_stack, page):
    """The classifier's partitions page: both dimensions, 15 partitions, one of them run."""
    deploy_stack.ensure_classifier_run()
    page.goto(f"{deploy_stack.dagster.url}/assets/classifier?view=partitions")
    page.get_by_text("resnet18", exact=True).first.wait_for()
    for label in ("fairface_resnet34", "resnet34", "resnet50", "efficientnet_b0",
                  "original", "white", "random"):
        assert page.get_by_text(label, exact=True).count() >= 1, label
    page.get_by_text(re.compile(r"15 Partitions Selected")).first.wait_for()
    # one partition has run (materialized, or failed when the MLflow-down test ran last)
    page.get_by_text(re.compile(r"Missing\s*\(14\)")).first.wait_for()
    _no_dialog(page)
    page.screenshot(path=str(SCREENSHOTS / "dagster-classifier-partitions.png"))


def test_gradcam_materialization_shows_heatmaps(deploy_stack, page):
    """A gradcam materialization (launched through GraphQL) shows FaceMass numbers and its
    inline Grad-CAM heatmap image in the metadata view."""
    stack = deploy_stack
    stack.ensure_classifier_run()
    assets = [a["assetKey"]["path"] for a in
              stack.dagster.graphql("{ assetNodes { assetKey { path } } }")["assetNodes"]]
    if ["gradcam"] not in assets:
        pytest.skip("no gradcam asset in beauty_pipeline.definitions: heatmap page not checked")
    run_id = stack.dagster.launch_assets(["gradcam"], ds.CLASSIFIER_PARTITION, ds.IN_PROCESS)
    assert stack.dagster.wait_for_run(run_id, 180) == "SUCCESS"
    page.goto(f"{stack.dagster.url}/assets/gradcam?view=events&partition={PARTITION}")
    page.get_by_text(run_id[:8], exact=True).first.wait_for()
    for label in ("face_mass", "face_mass_celebrity", "face_mass_ordinary"):
        page.get_by_text(label, exact=True).first.wait_for()
    page.locator("tr", has_text="class_average_heatmaps").get_by_text("Show Markdown").click()
    heatmap = page.locator("[role=dialog] img[src^='data:image/png']").first
    heatmap.wait_for()
    width, height, loaded = heatmap.evaluate("e => [e.naturalWidth, e.naturalHeight, e.complete]")
    assert loaded and width > 100 and height > 50, (width, height)
    assert heatmap.is_visible()
    page.screenshot(path=str(SCREENSHOTS / "dagster-gradcam-heatmaps.png"))
    page.keyboard.press("Escape")


def test_mlflow_run_comparison(deploy_stack, page):
    """MLflow's compare view of two classifier runs shows their parameters and metrics."""
    stack = deploy_stack
    stack.ensure_classifier_run()
    runs = [r for r in stack.mlflow_runs() if r["info"]["status"] == "FINISHED"]
    if len(runs) < 2:  # the deployment tests did not run: a second run with other settings
        config = {**ds.IN_PROCESS, "ops": {"classifier": {"config": {"epochs": 3}}}}
        run_id = stack.dagster.launch_assets(["classifier"], ds.CLASSIFIER_PARTITION, config)
        assert stack.dagster.wait_for_run(run_id, 180) == "SUCCESS"
        runs = [r for r in stack.mlflow_runs() if r["info"]["status"] == "FINISHED"]
    stack.mlflow.wait_ready(60)  # restarted by the MLflow-down test
    trained = [r for r in runs  # classifier runs with epoch metrics (not a fail-fast leftover)
               if {"train_accuracy", "val_accuracy"} <= {m["key"] for m in r["data"].get("metrics", [])}]
    assert len(trained) >= 2, [r["info"]["run_name"] for r in runs]
    shown = trained[:2]
    ids = [r["info"]["run_id"] for r in shown]
    query = urllib.parse.urlencode({"runs": json.dumps(ids),
                                    "experiments": json.dumps([shown[0]["info"]["experiment_id"]])})
    # tall enough that the metrics table (system metrics now come before test_accuracy) renders
    page.set_viewport_size({"width": 1600, "height": 3600})
    page.goto(f"{stack.mlflow.uri}/#/compare-runs?{query}")
    page.get_by_text("Comparing 2 Runs", exact=False).first.wait_for()
    for text in ("Parameters", "Metrics"):
        page.get_by_text(text, exact=False).first.wait_for()
    for name in ("learning_rate", "epoch_seconds"):  # a parameter, and a metric of every epoch
        page.get_by_text(name, exact=False).first.wait_for()
    for run_id in ids:
        page.get_by_text(run_id, exact=True).first.wait_for()
    close_assistant = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
    if close_assistant.count():
        close_assistant.first.click()
        close_assistant.first.wait_for(state="hidden")
    page.screenshot(path=str(SCREENSHOTS / "mlflow-compare.png"))
    page.set_viewport_size({"width": 1600, "height": 1000})


# ---------------------------------------------------------------------------------------------
# After a (tiny) `beauty-pipeline demo`: the MLflow Models page and the gradcam asset page, served
# from the demo's own stores (SQLite MLflow + the demo's Dagster home) by a real MLflow server
# and a real Dagster webserver.
# ---------------------------------------------------------------------------------------------

DEMO_HOME_ENV = "BEAUTY_PIPELINE_BROWSER_DEMO_HOME"  # use this finished demo instead of running one
TINY_DEMO = ["--image-size", "32", "--persons", "6", "--photos-per-person", "6",
             "--ordinary", "40", "--epochs", "1", "--backbone-epochs", "1"]
DEMO_PARTITIONS = [(m, b) for m in ("fairface_resnet34", "resnet18")
                   for b in ("original", "white", "random")]


@pytest.fixture(scope="module")
def demo_ui(tmp_path_factory):
    """A tiny demo (the default 2 models x 3 backgrounds), then `mlflow server` on its SQLite
    store and `dagster-webserver` on its Dagster home; stopped by PID at the end."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("demo_ui")
    env = ds.quiet_env(PYTHONPATH=os.pathsep.join(
        p for p in (str(ds.REPO), os.environ.get("PYTHONPATH")) if p))
    if os.environ.get(DEMO_HOME_ENV):  # a demo run before (e.g. on a busy machine), checked as is
        home = Path(os.environ[DEMO_HOME_ENV]).resolve()
    else:
        home = root / "home"
        with open(root / "demo.log", "wb") as log:
            subprocess.run([sys.executable, "-m", "beauty_pipeline.cli", "demo", "--home",
                            str(home), *TINY_DEMO], env=env, check=True, timeout=3000, cwd=root,
                           stdout=log, stderr=subprocess.STDOUT)
    demo_env = dict(line.removeprefix("export ").split("=", 1)
                    for line in (home / "demo.env").read_text().splitlines())
    with ds.supervised(root / "logs") as supervisor:
        mlflow_port, web_port = ds.free_port(), ds.free_port()
        mlflow_server = supervisor.start("mlflow", [
            *ds.console("mlflow", "mlflow"), "server",
            "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
            "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
            "--allowed-hosts", f"127.0.0.1:{mlflow_port},127.0.0.1"], env=env)
        webserver = supervisor.start("webserver", [
            *ds.console("dagster-webserver", "dagster_webserver"), "-h", "127.0.0.1",
            "-p", str(web_port), "-m", "beauty_pipeline.definitions"],
            env={**env, **demo_env}, cwd=root)
        mlflow_url, dagster_url = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{web_port}"
        ds.wait_until(lambda: ds.http_ok(f"{mlflow_url}/health"), 180, "the MLflow server",
                      alive=mlflow_server.check_alive)
        ds.wait_until(lambda: ds.http_ok(f"{dagster_url}/server_info"), 180,
                      "the Dagster webserver", alive=webserver.check_alive)
        yield {"home": home, "mlflow": mlflow_url, "dagster": dagster_url}


def test_mlflow_models_page_lists_the_demo_models_with_verdicts(demo_ui, page):
    """The Models page lists one `<model>-<background>` registered model per classifier run of
    the demo (six after a full demo); each version carries `verdict`, `named_families` and
    `test_accuracy` tags (REST), `@latest` resolves, and the version page shows the tags."""
    import requests

    api = f"{demo_ui['mlflow']}/api/2.0/mlflow"
    experiment = requests.get(f"{api}/experiments/get-by-name",
                              params={"experiment_name": "beauty-pipeline"}, timeout=10).json()
    runs = requests.post(f"{api}/runs/search", json={
        "experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 100,
        "filter": "tags.kind = 'classifier' and attributes.status = 'FINISHED'"}, timeout=10).json()
    tags_of = [{t["key"]: t["value"] for t in r["data"]["tags"]} for r in runs["runs"]]
    names = sorted({f"{t['model']}-{t['background']}" for t in tags_of})
    if not os.environ.get(DEMO_HOME_ENV):
        assert names == sorted(f"{m}-{b}" for m, b in DEMO_PARTITIONS)
    assert names
    for name in names:
        versions = requests.get(f"{api}/model-versions/search",
                                params={"filter": f"name='{name}'"}, timeout=10).json()
        (version,) = versions["model_versions"]
        tags = {t["key"]: t["value"] for t in version.get("tags", [])}
        assert {"verdict", "named_families", "test_accuracy"} <= set(tags), (name, tags)
        latest = requests.get(f"{api}/registered-models/alias",
                              params={"name": name, "alias": "latest"}, timeout=10).json()
        assert latest["model_version"]["version"] == version["version"], name
    page.goto(f"{demo_ui['mlflow']}/#/models")
    for name in names:
        page.get_by_text(name, exact=True).first.wait_for()
    _clear_mlflow_overlays(page)
    page.screenshot(path=str(SCREENSHOTS / "mlflow-models.png"))
    page.goto(f"{demo_ui['mlflow']}/#/models/{names[0]}/versions/1")
    page.get_by_text("verdict", exact=True).first.wait_for()
    page.get_by_text("named_families", exact=True).first.wait_for()
    _clear_mlflow_overlays(page)
    page.screenshot(path=str(SCREENSHOTS / "mlflow-model-version.png"))


def _clear_mlflow_overlays(page) -> None:
    """Close a first-visit modal and the assistant panel of a fresh MLflow UI."""
    for _ in range(3):
        if not page.locator("div.du-bois-light-modal-wrap[role=dialog]:visible").count():
            break
        page.keyboard.press("Escape")
        page.wait_for_timeout(500)
    close_assistant = page.locator("[data-component-id='mlflow.assistant.chat_panel.close']")
    if close_assistant.count():
        close_assistant.first.click(timeout=5_000, force=True)


def test_dagster_gradcam_page_shows_the_thumbnail_grid_inline(demo_ui, page):
    """The gradcam asset page of one partition shows the heatmap thumbnail grid in its metadata
    without opening anything (no "Show Markdown" click)."""
    done = sorted(p.stem.replace("__", "|") for p in
                  (demo_ui["home"] / "manifests" / "gradcam").glob("*.json"))
    key = "original|resnet18" if "original|resnet18" in done else done[0]
    partition = urllib.parse.quote(key)
    page.goto(f"{demo_ui['dagster']}/assets/gradcam?view=events&partition={partition}")
    page.get_by_text("heatmap_grid_file", exact=True).first.wait_for(timeout=90_000)
    thumbnail = page.locator("img[src^='data:image/webp']").first
    thumbnail.wait_for()
    thumbnail.scroll_into_view_if_needed()
    width, height, loaded = thumbnail.evaluate(
        "e => [e.naturalWidth, e.naturalHeight, e.complete]")
    assert loaded and width >= 48 and height >= 48, (width, height)
    assert thumbnail.is_visible()
    # in the metadata table itself, not in a "Show Markdown" dialog (nothing was clicked)
    assert thumbnail.locator("xpath=ancestor::*[@role='dialog']").count() == 0
    assert thumbnail.locator("xpath=ancestor::tr").filter(has_text="heatmaps").count() == 1
    page.get_by_text("mlflow_run", exact=True).first.wait_for()
    skip = page.locator("[role=dialog]").get_by_text("Skip", exact=True)
    if skip.count():  # the "Join the Dagster community" prompt of a fresh Dagster home
        skip.first.click()
        page.locator("[role=dialog]").first.wait_for(state="hidden")
    thumbnail.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "dagster-gradcam-thumbnails.png"))
