"""The data check reads only what changed (zoo/data/verdicts.py): a file whose identity
(size, mtime, ctime, inode, device) is the one its verdict was made for is not opened;
new, changed, touched and racily-clean files are; the verdicts are a fresh check's; two
processes share the store; a lost, damaged or read-only store costs a re-read, never the
check. Also the folder listing (one scandir a folder) and the progress line's pace."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.finetune_helpers import make_images
from zoo.data import check, check_listing, list_files, scan_folder
from zoo.data.verdicts import _FINE_TICK_NS, Identity, _connect, racy

REPO = Path(__file__).resolve().parents[1]
BROKEN = b"\x89PNG\r\n\x1a\n not the rest of it"


def _settle(root: Path) -> None:
    """Wait until every file's stamps are older than a tick: a check now trusts them
    next time (files written within the tick of a check are read again: the racy rule)."""
    newest = max(p.stat().st_ctime_ns for p in root.rglob("*"))
    time.sleep(max(0.0, (newest + _FINE_TICK_NS - time.time_ns()) / 1e9 + 0.01))


def _write_png(path: Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (12, 14, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_images(tmp_path_factory.mktemp("set") / "data", classes=2, per_class=10)
    (root / "class0" / "broken.png").write_bytes(BROKEN)  # stays broken
    (root / "class1" / "to-fix.png").write_bytes(BROKEN)  # fixed later
    return root


@pytest.fixture
def data(template: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(template, root)
    _settle(root)
    return root


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file the check opens (checks run inline: workers=1)."""
    opened: list[str] = []
    real = check._read

    def spy(path: str) -> bytes:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(check, "_read", spy)
    return opened


def _check(root: Path, **kwargs: object) -> check.ImageDataset:
    return check_listing(list_files(root), resize=16, workers=1, **kwargs)  # type: ignore[arg-type]


def _verdicts(found: check.ImageDataset) -> tuple[object, ...]:
    return found.digest, found.samples, sorted((b.path, b.reason) for b in found.bad)


def _opened(reads: list[str]) -> list[str]:
    taken = sorted(reads)
    reads.clear()
    return taken


def test_a_rerun_reads_only_the_new_and_changed_files_with_a_fresh_checks_verdicts(
    data: Path, reads: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.progress import LineProgress

    first = _check(data)
    assert len(_opened(reads)) == 22 and first.work.read == 22 and first.work.decoded == 22
    assert len(first.bad) == 2
    again = _check(data, progress=LineProgress())
    assert _opened(reads) == [] and again.work.unchanged == 22 and again.work.read == 0
    assert _verdicts(again) == _verdicts(first)
    assert "checked 22 files in" in capsys.readouterr().err

    changed = data / "class0" / "img003.png"
    _write_png(changed, seed=1)  # new pixels, same name
    _write_png(data / "class1" / "to-fix.png", seed=2)  # a broken file fixed
    (data / "class1" / "img004.png").write_bytes(BROKEN)  # a good file broken
    _write_png(data / "class1" / "new.png", seed=3)
    _settle(data)
    third = _check(data, progress=LineProgress())
    expected = [str(data / "class0" / "img003.png")] + [
        str(data / "class1" / n) for n in ("img004.png", "new.png", "to-fix.png")
    ]
    assert _opened(reads) == expected
    assert (third.work.read, third.work.decoded, third.work.unchanged) == (4, 4, 19)
    said = capsys.readouterr().err
    assert "19 unchanged since the last check, 4 read (4 decoded" in said, said
    fresh = _check(data, cache=False)
    assert len(_opened(reads)) == 23  # no cache: every file read
    assert _verdicts(third) == _verdicts(fresh)
    broken = {str(data / "class0" / "broken.png"), str(data / "class1" / "img004.png")}
    assert {b.path for b in third.bad} == broken  # the fixed file is good, the broken bad
    assert _verdicts(_check(data)) == _verdicts(fresh) and _opened(reads) == []


def test_a_csv_elsewhere_listing_the_same_files_shares_their_verdicts(
    data: Path, reads: list[str], tmp_path: Path
) -> None:
    # `zoo rank` lists the files it kept in a CSV in a temporary folder: the store is the
    # files' folder's, not the listing's
    first = _check(data)
    manifest = tmp_path / "elsewhere" / "checked.csv"
    manifest.parent.mkdir()
    rows = [f"{s.path},{first.classes[s.label]}" for s in first.samples]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    reads.clear()
    again = _check(manifest)
    assert _opened(reads) == [] and again.work.unchanged == len(first.samples)
    assert again.digest == first.digest


def test_a_touched_chmodded_or_rewritten_file_is_read_again_even_if_its_stamps_look_old(
    data: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first check's clock runs an hour ahead (a share whose server's clock lags):
    # every later change stamps the files before the rows' time, so the identity alone
    # (size, mtime, ctime, inode, device) tells what changed
    import zoo.data.incremental as incremental

    now = time.time_ns
    with monkeypatch.context() as mp:
        mp.setattr(incremental.time, "time_ns", lambda: now() + 3600 * 10**9)
        first = _check(data)
    reads.clear()
    touched, chmodded, rewritten = (data / "class0" / f"img00{i}.png" for i in (1, 2, 6))
    earlier = touched.stat().st_mtime_ns - 10**9  # only the stamps change, not the bytes
    os.utime(touched, ns=(earlier, earlier))
    os.chmod(chmodded, 0o640)  # only its ctime changes
    _write_png(rewritten, seed=11)
    _settle(data)
    again = _check(data)
    assert _opened(reads) == [str(touched), str(chmodded), str(rewritten)]
    assert _verdicts(again) == _verdicts(_check(data, cache=False))
    assert _verdicts(again) != _verdicts(first)  # the rewritten file's new content

    gone = again.samples[0]
    Path(again.decoded_dir or "", f"{gone.sha256}.npy").unlink()  # pruned meanwhile
    reads.clear()
    last = _check(data)
    assert _opened(reads) == [gone.path] and last.work.decoded == 1
    assert last.decoded_path(0) is not None and last.decoded_path(0).exists()  # type: ignore[union-attr]


def test_a_file_not_older_than_its_check_is_read_again_until_it_is(
    data: Path, reads: list[str]
) -> None:
    # git's racily-clean rule: a row made within the tick of the file's stamps is not
    # trusted (the file could change again with the same stamps); a future stamp is
    # the sure way to make one
    future = data / "class1" / "img000.png"
    soon = time.time_ns() + 3600 * 10**9
    os.utime(future, ns=(soon, soon))
    _settle(data)
    first = _check(data)
    reads.clear()
    for _ in range(2):
        assert _verdicts(_check(data)) == _verdicts(first)
        assert _opened(reads) == [str(future)]
    now = time.time_ns() - 10**9
    os.utime(future, ns=(now, now))  # in the past again: read once more, then trusted
    _settle(data)
    _check(data)
    assert _opened(reads) == [str(future)]
    _check(data)
    assert _opened(reads) == []


def test_the_racy_rule_follows_the_file_systems_tick() -> None:
    second = 1_000_000_000
    fine = Identity(1, 100 * second + 123, 100 * second + 456, 1, 1)
    assert racy(fine, 100 * second + 456 + _FINE_TICK_NS)  # within the tick: read again
    assert not racy(fine, 100 * second + 457 + _FINE_TICK_NS)
    coarse = Identity(1, 100 * second, 100 * second, 1, 1)  # whole seconds: FAT, HFS+
    assert racy(coarse, 101 * second + 500_000_000)
    assert not racy(coarse, 102 * second + 1)
    assert racy(Identity(1, 100 * second, 300 * second + 1, 1, 1), 300 * second + 2)  # ctime


def test_a_deleted_or_damaged_store_is_begun_anew(
    data: Path, reads: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.progress import LineProgress

    first = _check(data)
    (store,) = (Path(os.environ["ZOO_HOME"]) / "data" / "verdicts").glob("*.sqlite")
    store.unlink()
    reads.clear()
    assert _verdicts(_check(data, progress=LineProgress())) == _verdicts(first)
    assert len(_opened(reads)) == 22 and "verdict store" not in capsys.readouterr().err

    store.write_bytes(os.urandom(8192))  # garbage where the database was
    assert _verdicts(_check(data, progress=LineProgress())) == _verdicts(first)
    assert len(_opened(reads)) == 22
    said = [line for line in capsys.readouterr().err.splitlines() if "verdict store" in line]
    assert len(said) == 1 and "damaged" in said[0] and "begun anew" in said[0], said
    assert _verdicts(_check(data)) == _verdicts(first) and _opened(reads) == []


_CONCURRENT = """
import json, os, sys, time
from pathlib import Path
from zoo.data import check_listing, incremental, list_files
from zoo.progress import LineProgress

incremental._FLUSH = 3  # many small transactions: the two processes' writes interleave
ready, go = Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.005)
found = check_listing(list_files(sys.argv[1]), resize=16, workers=1, progress=LineProgress())
print(json.dumps({"digest": found.digest, "read": found.work.read}))
"""


def test_two_processes_checking_one_folder_at_once_leave_a_consistent_store(
    data: Path, tmp_path: Path, reads: list[str]
) -> None:
    for i in range(40):  # enough files for the two checks to overlap for a while
        _write_png(data / f"class{i % 2}" / f"more{i:02d}.png", seed=100 + i)
    _settle(data)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    procs = []
    for n in (1, 2):
        argv = [sys.executable, "-c", _CONCURRENT, str(data), str(tmp_path / f"ready{n}")]
        procs.append(
            subprocess.Popen(
                [*argv, str(tmp_path / "go")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{n}").exists() for n in (1, 2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    (tmp_path / "go").touch()  # both start checking now
    outs = [p.communicate(timeout=120) for p in procs]
    fresh = _check(data, cache=False)
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
        assert "verdict store" not in err and "Traceback" not in err, err  # never gave up
        assert json.loads(out)["digest"] == fresh.digest
    (db,) = (Path(os.environ["ZOO_HOME"]) / "data" / "verdicts").glob("*.sqlite")
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute("SELECT path, size, mtime_ns, inode, sha256, reason FROM verdicts")
        stored = {os.fsdecode(path): rest for path, *rest in rows}
    files = sorted(str(p) for p in data.rglob("*.png"))
    assert sorted(stored) == files  # one row a file, each the file as it is
    for path in files:
        st = os.stat(path)
        size, mtime, inode, sha, reason = stored[path]
        assert (size, mtime, inode) == (st.st_size, st.st_mtime_ns, st.st_ino)
        assert (sha is None) == (reason is not None)
    good = {s.path: s.sha256 for s in fresh.samples}
    assert all(stored[p][3] == sha for p, sha in good.items())
    reads.clear()
    assert _verdicts(_check(data)) == _verdicts(fresh) and _opened(reads) == []


def test_a_store_another_process_is_creating_is_waited_for(tmp_path: Path) -> None:
    # The race two checks starting at once run into (seen under load): one process has
    # the new store write-locked while still in rollback mode, and SQLite answers the
    # other's switch to WAL with SQLITE_BUSY at once, without its busy timeout.
    db = tmp_path / "store.sqlite"
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        conn = _connect(db, str(tmp_path))
    finally:
        release.join()
        other.close()
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


_READ_ONLY = """
import json, sys
from zoo.data import check_listing, list_files
found = check_listing(list_files(sys.argv[1]), resize=16, workers=1)
print(json.dumps({"digest": found.digest, "read": found.work.read}))
"""


def test_a_read_only_home_still_checks_and_keeps_nothing(data: Path, reads: list[str]) -> None:
    from faults.helpers import _cannot, _readonly_argv, readonly_mounts_work

    if not readonly_mounts_work():
        _cannot("needs read-only bind mounts (unshare --mount as root)")
    home = Path(os.environ["ZOO_HOME"])
    _check(data)  # a store and decoded arrays, made while the home could be written
    _write_png(data / "class0" / "img005.png", seed=7)  # changed: to decode, nowhere to keep
    _settle(data)
    before = {str(p): p.stat().st_mtime_ns for p in home.rglob("*")}
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    argv = _readonly_argv([sys.executable, "-c", _READ_ONLY, str(data)], [home])
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    found = json.loads(proc.stdout)
    assert found["digest"] == _check(data, cache=False).digest
    assert found["read"] == 22  # no cache: every file read
    assert {str(p): p.stat().st_mtime_ns for p in home.rglob("*")} == before


def _listed_as_before(root: Path) -> list[str]:
    """The listing as rglob made it before scandir: sorted paths, hidden parts out, files
    (links to files too)."""
    root = root.resolve()
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).parts
            if any(p.startswith(".") or p == "__MACOSX" for p in rel) or not path.is_file():
                continue
            out.append(str(path))
    return out


def test_the_scandir_listing_lists_what_rglob_listed_in_the_same_order(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    for rel in ("c1/a/b", "c1/a-c/x/y", "c1/a.c", "c1/.hidden", "c1/.h/f", "c1/__MACOSX/g",
                "c2/z", "c2/Z", "c2/é", "c3/a/b/deep", ".top/x"):  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "c1" / "link").symlink_to(root / "c2" / "z")
    (root / "c1" / "dirlink").symlink_to(root / "c2")
    (root / "c1" / "broken").symlink_to(root / "nowhere")
    listing = scan_folder(root)
    assert list(listing.paths) == _listed_as_before(root)
    assert listing.paths[:4] == tuple(
        str(root / "c1" / r) for r in ("a/b", "a-c/x/y", "a.c", "link")
    )


def test_plain_progress_lines_give_the_rate_and_the_time_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import zoo.progress as progress

    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    bar = progress.LineProgress(stream=out)
    bar.start("checking images", 20_000, unit="images")
    clock[0] += 1.0
    bar.advance(19_000)  # from the cache: too soon for a line (2 s)
    clock[0] += 2.0
    bar.advance(200)
    clock[0] += 100.0
    bar.advance(400)  # 4 images/s over the last stretch; a line a minute at least
    bar.finish()
    assert out.getvalue().splitlines() == [
        "zoo: checking images: started (20000 images)",
        "zoo: checking images: 96% (19,200/20,000 images, 6,400 images/s, about 1 s left)",
        "zoo: checking images: 98% (19,600/20,000 images, 4 images/s, about 1 min 40 s left)",
        "zoo: checking images: done",
    ]
