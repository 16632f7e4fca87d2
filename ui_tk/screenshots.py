"""Screenshots of every page of the configurator, taken under Xvfb, for the README.

    python -m stationflow.ui_tk.screenshots [--out docs/screenshots]

It builds a demo station in a temporary folder (a config, the WATS emulator rejecting a share of
the reports, a few dozen sample reports submitted), starts the service from the Service page as a
person would, waits for the uploads, and photographs each page. No image library is needed: Xvfb
is started with ``-fbdir``, which keeps its screen in an XWD file; the window's rectangle is
cut out of it and written as PNG with zlib.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ pixels

def read_xwd(path: Path) -> tuple[int, int, int, bytes, bool]:
    """(width, height, bytes per line, pixels, LSB first) of a 24/32-bit XWD screen dump."""
    data = path.read_bytes()
    endian = ">" if struct.unpack(">I", data[:4])[0] < 10_000 else "<"
    fields = struct.unpack(endian + "25I", data[:100])
    header_size, width, height, byte_order, bpp, bytes_per_line, ncolors = (
        fields[0], fields[4], fields[5], fields[7], fields[11], fields[12], fields[19])
    if bpp != 32:
        raise SystemExit(f"screenshots need a 24-bit Xvfb screen (got {bpp} bits per pixel)")
    start = header_size + ncolors * 12
    return width, height, bytes_per_line, data[start:start + height * bytes_per_line], byte_order == 0


def write_png(path: Path, width: int, height: int, rows: list[bytes]) -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + row for row in rows)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    path.write_bytes(png)


def capture(fb: Path, box: tuple[int, int, int, int], out: Path) -> None:
    """Cut ``box`` (x, y, width, height) out of the Xvfb screen file and save it as PNG."""
    width, height, stride, pixels, lsb = read_xwd(fb)
    x, y, w, h = box
    w, h = min(w, width - x), min(h, height - y)
    rows = []
    for line in range(y, y + h):
        start = line * stride + x * 4
        px = pixels[start:start + w * 4]
        if lsb:  # B G R X
            rgb = bytearray(w * 3)
            rgb[0::3], rgb[1::3], rgb[2::3] = px[2::4], px[1::4], px[0::4]
        else:  # X R G B
            rgb = bytearray(w * 3)
            rgb[0::3], rgb[1::3], rgb[2::3] = px[1::4], px[2::4], px[3::4]
        rows.append(bytes(rgb))
    write_png(out, w, h, rows)


# ------------------------------------------------------------------------------------------ the demo station

def start_xvfb(fbdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    if shutil.which("Xvfb") is None:
        raise SystemExit("Xvfb is not installed (Debian/Ubuntu: apt install xvfb)")
    for number in range(120, 200):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            break
    display = f":{number}"
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x900x24", "-fbdir", str(fbdir), "-nolisten",
                             "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("Xvfb did not start")
        time.sleep(0.05)
    return proc, display


def make_station(folder: Path, url: str, reports: int) -> Path:
    from ..engine.devtools.samples import make_report_bytes

    drop = folder / "drop" / "json"
    drop.mkdir(parents=True)
    (folder / "drop" / "csv").mkdir()
    config = folder / "station.yaml"
    config.write_text(f"""\
station: {{name: LINE1-ICT-03, location: Line 1, purpose: Production}}
server: {{url: "{url}", token: dXNlcjpwYXNz, timeout_s: 30}}
data_dir: ./stationflow-data
intake:
  - {{name: ict-json, watch: ./drop/json, patterns: ["*.json"], converter: wsjf, settle_ms: 300}}
  - {{name: fct-csv, watch: ./drop/csv, patterns: ["*.csv"], converter: csv, after: move, move_to: ./done/csv}}
upload: {{concurrency: 4, rate_per_s: null}}
""")
    files = []
    for index in range(reports):
        path = folder / f"report-{index}.json"
        path.write_bytes(make_report_bytes(index, seed=index))
        files.append(str(path))
    subprocess.run([sys.executable, "-m", "stationflow", "-c", str(config), "submit", *files], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # A link to a file on a share: not followed (the Intake page says so under "Follow symbolic links").
    share = folder / "share"
    share.mkdir()
    (share / "ict-0042.json").write_bytes(make_report_bytes(reports, seed=reports))
    try:
        (drop / "ict-0042.json").symlink_to(share / "ict-0042.json")
    except OSError:  # Windows without the privilege to make links: the picture lacks the note
        pass
    return config


def pump(root: object, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        root.update()  # type: ignore[attr-defined]
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--reports", type=int, default=40)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from ..engine.devtools.emulator import Emulator

    with tempfile.TemporaryDirectory(prefix="sf-shots-") as tmp:
        work = Path(tmp)
        fbdir = work / "fb"
        fbdir.mkdir()
        xvfb, display = start_xvfb(fbdir)
        os.environ["DISPLAY"] = display
        emulator = Emulator(seed=7)
        emulator.set_faults(reject_rate=0.15)
        emulator.start()
        app = None
        try:
            config = make_station(work / "station", emulator.url, args.reports)
            import tkinter as tk

            from .app import ConfiguratorApp

            root = tk.Tk(className="stationflow")
            app = ConfiguratorApp(root, config)
            pump(root, 1.0)
            service = app.select("Service")
            pump(root, 2.5)
            service.start_button.invoke()  # type: ignore[attr-defined]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and emulator.stats().posts < args.reports:
                pump(root, 0.2)
            # A file the converter cannot read: it shows on the Problems page beside the refused reports.
            (config.parent / "drop" / "json" / "ict-broken-0815.json").write_text('{"type": "T", "sn": ')
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(
                    (config.parent / "stationflow-data" / "rejected" / "ict-json").glob("*.json")):
                pump(root, 0.2)
            pump(root, 2.5)
            connection = app.select("Connection")
            connection.test_button.invoke()  # type: ignore[attr-defined]
            pump(root, 1.5)
            frame = root.winfo_rootx(), root.winfo_rooty(), root.winfo_width(), root.winfo_height()
            # Park the pointer outside the window (Xvfb draws it into the screen).
            root.event_generate("<Motion>", warp=True, x=frame[2] + 40, y=frame[3] + 40)
            names = {"Connection": "connection", "Station": "station", "Intake": "intake", "Settings": "settings",
                     "Problems": "problems", "Service": "service", "Lifecycles": "lifecycles"}
            for title, name in names.items():
                page = app.select(title)
                pump(root, 2.5 if title in ("Problems", "Service", "Lifecycles") else 0.6)
                if title == "Lifecycles":
                    page.show("report")  # type: ignore[attr-defined]
                    pump(root, 0.3)
                if title == "Problems":
                    table = page.table  # type: ignore[attr-defined]
                    rows = table.get_children()
                    if rows:
                        table.selection_set(rows[0])
                        pump(root, 0.4)
                capture(fbdir / "Xvfb_screen0", frame, out / f"configure-{name}.png")
                print(f"wrote {out / f'configure-{name}.png'}")
            app.select("Connection")
            app.form("server").field("timeout_s").set("-1")
            app.form("server").field("url").set("wats.example.com")
            app.validate_now()
            pump(root, 0.6)
            capture(fbdir / "Xvfb_screen0", frame, out / "configure-errors.png")
            print(f"wrote {out / 'configure-errors.png'}")
            app.form("server").field("timeout_s").set("30")
            app.form("server").field("url").set(emulator.url)
            app.validate_now()
            app.select("Service")
            app.pages["Service"].stop_button.invoke()  # type: ignore[attr-defined]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and app.probe and app.probe.running is not False:
                pump(root, 0.2)
        finally:
            if app is not None:
                for child in app.link.children:
                    child.terminate()
                app.dirty = False
                app.close()
            emulator.stop()
            xvfb.terminate()
            xvfb.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
