"""Ranking loading and validation: row-numbered errors, stable safe person keys, content hash."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pandas as pd
import pytest
from conftest import require_shared

from beauty_pipeline.ranking import (
    RankingError,
    assign_person_keys,
    check_person_key,
    diff_persons,
    load_ranking,
    person_key,
    ranking_digest,
)

HEADER = "name,gender,rank,list,year\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ranking.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_ranking_loads_from_package_resources():
    frame = load_ranking()
    assert len(frame) == 28
    assert set(frame["gender"]) == {"Male", "Female"}
    assert set(frame["year"]) == {2024}
    assert frame["person"].is_unique
    rose = frame[frame["name"] == "Rosé"].iloc[0]
    assert (rose["person"], rose["rank"], rose["country"]) == ("rose", 7, "South Korea")


def test_news_report_shape_derives_year_and_matches_shipped_facts():
    partial = load_ranking(require_shared("rankings", "tc_candler_2024_partial.csv"))
    assert set(partial["year"]) == {2024}
    assert "note" not in partial.columns
    assert ranking_digest(partial) == ranking_digest(load_ranking())


def test_every_bad_row_is_named(tmp_path):
    text = HEADER + ("Ann Example,female,1,l,2024\n"
                     ",female,2,l,2024\n"                  # row 3: empty name
                     "Bea Example,robot,3,l,2024\n"        # row 4: bad gender
                     "Cid Example,male,zero,l,2024\n"      # row 5: bad rank
                     "Ann Example,female,1,l,2024\n"       # row 6: duplicate row
                     "ann  EXAMPLE,female,7,l,2024\n"      # row 7: same person again
                     "Dan Example,male,-2,l,2024\n")       # row 8: bad rank
    with pytest.raises(RankingError) as caught:
        load_ranking(write(tmp_path, text))
    message = str(caught.value)
    for row, words in [(3, "empty name"), (4, "bad gender"), (5, "bad rank"),
                       (6, "duplicate of row 2"), (7, "duplicate of row 2"), (8, "bad rank")]:
        assert f"row {row}: " in message and words in message.split(f"row {row}: ")[1]
    assert "row 2:" not in message


def test_missing_columns_and_missing_file_are_clear(tmp_path):
    with pytest.raises(RankingError, match="lacks column"):
        load_ranking(write(tmp_path, "name,rank\nA,1\n"))
    with pytest.raises(RankingError, match="does not exist"):
        load_ranking(tmp_path / "nope.csv")


def test_person_keys_are_safe_stable_and_distinct():
    names = ["Rosé", "Halil İbrahim Ceyhan", "지수", "平手友梨奈", "../../etc/passwd", "..",
             "a\\b/c", "CON", "Ni-Ki", "x" * 300]
    keys = assign_person_keys(names)
    for name, key in keys.items():
        assert check_person_key(key) == key, name
        assert key == assign_person_keys([name])[name]  # a key does not depend on the others
        assert Path("/root", key).resolve().parent == Path("/root")
    assert len(set(keys.values())) == len(names)
    assert keys["Rosé"] == "rose" and keys["Halil İbrahim Ceyhan"] == "halil-ibrahim-ceyhan"
    assert keys["지수"].startswith("p-") and keys["平手友梨奈"].startswith("p-")
    assert keys["../../etc/passwd"] == "etc-passwd"
    assert person_key("지수") == keys["지수"]  # same input, same key, every time


def test_slug_collisions_are_split_deterministically():
    first = assign_person_keys(["Rose", "Rosé", "ROSE"])
    second = assign_person_keys(["Rosé", "ROSE", "Rose"])
    assert first == second
    assert first["Rose"] == first["ROSE"] == "rose"  # same person, case aside
    assert first["Rosé"].startswith("rose-") and first["Rosé"] != "rose"


def test_unsafe_keys_are_refused():
    for key in ("../x", "a/b", "", "A", ".hidden", "a\\b", "-x"):
        with pytest.raises(ValueError, match="unsafe person key"):
            check_person_key(key)


def test_digest_ignores_row_order_and_sees_content(tmp_path):
    a = load_ranking(write(tmp_path, HEADER + "A Person,male,1,l,2024\nB Person,female,2,l,2024\n"))
    b = load_ranking(write(tmp_path, HEADER + "B Person,female,2,l,2024\nA Person,male,1,l,2024\n"))
    c = load_ranking(write(tmp_path, HEADER + "A Person,male,1,l,2024\nB Person,female,3,l,2024\n"))
    assert ranking_digest(a) == ranking_digest(b) != ranking_digest(c)


def test_diff_persons():
    assert diff_persons(["a", "b", "c"], ["b", "c", "d", "e"]) == (["d", "e"], ["a"])
    assert diff_persons(["a"], ["a"]) == ([], [])


def test_load_from_http_url(tmp_path):
    body = (HEADER + "Zoë Example,female,1,l,2024\n").encode("utf-8")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            status = 200 if self.path == "/ranking.csv" else 404
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) if status == 200 else 0))
            self.end_headers()
            if status == 200:
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        frame = load_ranking(f"{base}/ranking.csv")
        assert frame["person"].tolist() == ["zoe-example"]
        assert isinstance(frame, pd.DataFrame)
        with pytest.raises(RankingError, match="could not fetch"):
            load_ranking(f"{base}/missing.csv")
    finally:
        server.shutdown()
        server.server_close()
