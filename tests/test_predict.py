"""segmenter_predict.py on the images and videos a user has, against segmenter_eval.py's own predictions."""
from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_script
from PIL import Image

from segmenter.outputs.visualize import MARGIN, TITLE

ALL_OUTPUTS = ("labels", "labelIds", "color", "overlay")


def write_video(path: Path, frames: int, hw=(48, 64), fps: float = 12.5) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (hw[1], hw[0]))
    rng = np.random.default_rng(frames)
    for i in range(frames):
        writer.write(cv2.GaussianBlur(rng.integers(0, 255, (*hw, 3), np.uint8), (0, 0), 3) + i)
    writer.release()


def png_header(hw: tuple[int, int]) -> bytes:
    """The first 33 bytes of a PNG whose header declares hw, and an IEND: no pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", hw[1], hw[0], 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def user_files(tmp_path_factory) -> Path:
    """A folder tree as a user has one: equal names in two folders, odd formats, a broken file, two videos."""
    root = tmp_path_factory.mktemp("user") / "photos"
    rng = np.random.default_rng(0)
    photo = lambda h, w: cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), np.uint8), (0, 0), 2)  # noqa: E731
    for folder in ("street", "park"):
        (root / folder).mkdir(parents=True)
        cv2.imwrite(str(root / folder / "same.png"), photo(70, 130))
    cv2.imwrite(str(root / "gray.png"), cv2.cvtColor(photo(60, 90), cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(root / "rgba.png"), np.dstack([photo(50, 100), np.full((50, 100), 128, np.uint8)]))
    cv2.imwrite(str(root / "deep.tiff"), (photo(40, 70).astype(np.uint16) * 257))
    cv2.imwrite(str(root / "flat.webp"), photo(45, 66))
    cv2.imwrite(str(root / "old.bmp"), photo(30, 30))
    upright = Image.fromarray(photo(40, 80)[:, :, ::-1])
    exif = upright.getexif()
    exif[0x0112] = 6  # stored sideways: viewers (and we) turn it upright to 80x40
    buffer = io.BytesIO()
    upright.save(buffer, "JPEG", exif=exif.tobytes())
    (root / "rotated.jpg").write_bytes(buffer.getvalue())
    (root / "broken.jpg").write_bytes(b"this is not a JPEG")
    (root / "huge.png").write_bytes(png_header((200_000, 200_000)))  # 45 bytes declaring 40 gigapixels
    write_video(root / "one.mp4", 1)
    write_video(root / "ten.mp4", 10)
    return root


@pytest.fixture(scope="module")
def predicted(user_files, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("predicted")
    proc = run_script("segmenter_predict.py", "--model", tiny_checkpoint, "--input", user_files, "--output-dir", out,
                      "--frames", "--device", "cpu", "--precision", "fp32", "--batch-size", 3)
    return proc, out


def test_every_readable_file_is_segmented(predicted, user_files):
    proc, out = predicted
    assert proc.returncode == 1  # the broken file, and the header declaring an image too large to merge
    assert "error: 2 of 12 inputs could not be read" in proc.stderr and "broken.jpg" in proc.stderr
    assert "huge.png (200000x200000, " in proc.stderr and "GiB of memory" in proc.stderr
    expected_sizes = {"street/same": (70, 130), "park/same": (70, 130), "gray": (60, 90), "rgba": (50, 100),
                      "deep": (40, 70), "flat": (45, 66), "old": (30, 30), "rotated": (80, 40)}
    for rel, hw in expected_sizes.items():
        for kind in ALL_OUTPUTS:
            assert (out / f"{rel}_{kind}.png").is_file(), (rel, kind)
        labels = cv2.imread(str(out / f"{rel}_labels.png"), cv2.IMREAD_UNCHANGED)
        assert labels.shape == hw and labels.dtype == np.uint8 and labels.max() < 19, rel  # the original size
        colour = cv2.imread(str(out / f"{rel}_color.png"))
        assert colour.shape == (*hw, 3)
    assert not list(out.glob("broken*")) and not list(out.glob("huge*"))
    a, b = (cv2.imread(str(out / f"{f}/same_overlay.png")) for f in ("street", "park"))
    assert a is not None and b is not None  # equal names in two folders: both kept


def test_overlays_have_their_panels(predicted):
    _, out = predicted
    for rel, (h, w) in {"street/same": (70, 130), "rotated": (80, 40)}.items():
        picture = cv2.imread(str(out / f"{rel}_overlay.png"))
        assert picture.shape[1] == 2 * w + 3 * MARGIN and picture.shape[0] > TITLE + h  # two panels and a legend
        for left in (MARGIN, 2 * MARGIN + w):
            panel = picture[TITLE:TITLE + h, left:left + w]
            assert panel.std() > 5, (rel, left)  # not blank
        assert picture[:TITLE].min() < 100  # a dark title on white
        assert picture[TITLE + h + MARGIN:].min() < 100  # the legend


def test_videos_give_overlay_videos_and_frames(predicted):
    _, out = predicted
    for name, frames in (("one", 1), ("ten", 10)):
        capture = cv2.VideoCapture(str(out / f"{name}_overlay.mp4"))
        assert capture.isOpened()
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.5)
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            assert frame.shape == (48, 64, 3)
            count += 1
        assert count == frames
        assert len(list((out / f"{name}_frames").glob("*_labels.png"))) == frames
        import av  # the video extra (setup.sh installs it): H.264, which browsers play

        with av.open(str(out / f"{name}_overlay.mp4")) as video:
            assert video.streams.video[0].codec_context.name == "h264"


def test_labels_equal_the_evaluations(tiny_checkpoint, tmp_path):
    """Prediction on a data set's images gives the labels segmenter_eval.py --pred-dir saves for them."""
    for args in (("tools/make_dataset.py", "--data-root", tmp_path / "data", "--n-images", 3, "--size", 90, 170),
                 ("segmenter_eval.py", "--model", tiny_checkpoint, "--data-root", tmp_path / "data", "--metrics-path",
                  tmp_path / "m.yaml", "--pred-dir", tmp_path / "pred", "--device", "cpu", "--precision", "fp32"),
                 ("segmenter_predict.py", "--model", tiny_checkpoint, "--input",
                  tmp_path / "data" / "cityscapes" / "leftImg8bit" / "val", "--output-dir", tmp_path / "out",
                  "--device", "cpu", "--precision", "fp32", "--save", "labels", "--batch-size", 2)):
        proc = run_script(*args)
        assert proc.returncode == 0, proc.stderr
    evaluated = sorted((tmp_path / "pred" / "labels").glob("*.png"))
    assert len(evaluated) == 3
    for png in evaluated:
        city = png.stem.split("_")[0]
        ours = tmp_path / "out" / city / f"{png.stem}_labels.png"
        assert ours.read_bytes() == png.read_bytes()
    assert not list((tmp_path / "out").rglob("*_overlay.png"))  # --save labels only


def test_glob_and_limit(user_files, tiny_checkpoint, tmp_path):
    proc = run_script("segmenter_predict.py", "--model", tiny_checkpoint, "--input", f"{user_files}/*/same.png",
                      str(user_files / "gray.png"), "--output-dir", tmp_path, "--device", "cpu", "--limit", 2,
                      "--save", "color")
    assert proc.returncode == 0, proc.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.png"))
    assert written == [os.path.join("photos", "park", "same_color.png"), os.path.join("photos", "street",
                                                                                      "same_color.png")]


def test_auto_measures_for_the_windows_of_the_run(tiny_checkpoint, tmp_path):
    """The probe is sized by the run: every image's windows and every video frame's, up to --limit."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "b.png"):  # 64x128 at windows of 64, stride 64: 2 windows each
        cv2.imwrite(str(inputs / name), np.full((64, 128, 3), 90, np.uint8))
    write_video(inputs / "z.mp4", 10, hw=(64, 64))  # 1 window per frame
    for limit, windows in ((None, 2 * 2 + 10), (5, 2 * 2 + 3)):
        extra = ("--limit", limit) if limit else ()
        proc = run_script("segmenter_predict.py", "--model", tiny_checkpoint, "--input", inputs, "--output-dir",
                          tmp_path / f"out{limit}", "--window-stride", 64, "--save", "labels", *extra,
                          env={"SEGMENTER_CACHE_DIR": str(tmp_path / f"cache{limit}")})  # measured each time
        assert proc.returncode == 0, proc.stderr
        assert f"pay for itself in {windows} windows" in proc.stdout, proc.stdout


def test_auto_passes_over_unreadable_inputs(tiny_checkpoint, tmp_path):
    """With the default auto, the probe and calibration read only inputs that can be read: the broken ones (here
    first in order) are named at the end and the rest segmented, exit status 1."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "0_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (inputs / "1_huge.png").write_bytes(png_header((300_000, 300_000)))
    cv2.imwrite(str(inputs / "a.png"), np.full((64, 128, 3), 90, np.uint8))
    proc = run_script("segmenter_predict.py", "--model", tiny_checkpoint, "--input", inputs, "--output-dir",
                      tmp_path / "out", "--save", "labels", env={"SEGMENTER_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 1, proc.stderr
    assert "error: 2 of 3 inputs could not be read" in proc.stderr
    assert "0_broken.png" in proc.stderr and "1_huge.png" in proc.stderr
    assert (tmp_path / "out" / "a_labels.png").is_file() and "auto:" in proc.stdout
