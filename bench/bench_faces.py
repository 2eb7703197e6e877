"""Face stage throughput (images/s): process pool vs a single process on the same photos."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from beauty_pipeline.storage import ImageStore
from beauty_pipeline.vision.faces import FaceConfig, process_photos

SHARED = Path(__file__).resolve().parents[2] / "shared"


def load_photos(store: ImageStore, folder: Path, limit: int) -> list[tuple[str, str]]:
    files = sorted(folder.glob("*.jpg"))[:limit or None]
    return [(f.name, store.put_bytes(f.read_bytes(), "jpg")) for f in files]


def run(rows, root: Path, config: FaceConfig) -> tuple[float, object]:
    """Seconds for one process_photos call into a fresh store holding the same source photos."""
    store = ImageStore(root)
    start = time.perf_counter()
    _, report = process_photos(rows, store, config, person="bench", looks=0, source="fairface")
    return time.perf_counter() - start, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "fairface_margin125")
    parser.add_argument("--model", type=Path,
                        default=SHARED / "models" / "face_detection_yunet_2026may.onnx")
    parser.add_argument("--limit", type=int, default=0, help="first N photos (0 = all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not args.data.is_dir() or not args.model.is_file():
        print(f"need {args.data} and {args.model} (../shared fixtures)", file=sys.stderr)
        return 2
    single = FaceConfig(detector_model_path=str(args.model), workers=1)
    pooled = FaceConfig(detector_model_path=str(args.model), workers=args.workers,
                        min_pool_images=1)
    times: dict[str, list[float]] = {"single": [], "pool": []}
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.rounds):
            for name, config in (("single", single), ("pool", pooled)):
                root = Path(tmp) / f"{name}{round_no}"
                rows = load_photos(ImageStore(root), args.data, args.limit)
                seconds, reports[name] = run(rows, root, config)
                times[name].append(seconds)
    count = len(rows)
    same = reports["single"]["drop_reason"].tolist() == reports["pool"]["drop_reason"].tolist()
    rate = {name: count / statistics.median(values) for name, values in times.items()}
    best = {name: count / min(values) for name, values in times.items()}
    print(f"photos: {count} from {args.data.name}; cpu_count={os.cpu_count()}; "
          f"pool workers={args.workers}; rounds={args.rounds} (median); "
          f"load average at end {os.getloadavg()[0]:.1f}")
    for name in ("single", "pool"):
        print(f"  {name:6s}: {rate[name]:6.1f} images/s median, {best[name]:6.1f} best  "
              f"(runs: {', '.join(f'{t:.2f}s' for t in times[name])})")
    print(f"  ratio pool/single: {rate['pool'] / rate['single']:.2f}x median, "
          f"{best['pool'] / best['single']:.2f}x best; same results: {same}")
    print("  drop reasons:", reports["pool"]["drop_reason"].replace("", "kept")
          .value_counts().to_dict())
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
