"""Rewrites a LibTorch archive (a uniad checkpoint) so that its tensors say they live on
another device, as a checkpoint saved from a GPU does, without a GPU to save one.

    retag_device.py IN OUT [DEVICE]   (DEVICE: cuda:0 by default)

In the archive's pickle every storage names its location ('cpu'); this replaces that one
string (the pickle memoises it, so it is written once) and rewrites the zip uncompressed, as
LibTorch writes it. Exit 1 if the file holds no 'cpu' location to replace."""
import struct
import sys
import zipfile


def retag(pickle: bytes, device: str) -> bytes:
    old = b"X" + struct.pack("<I", 3) + b"cpu"  # BINUNICODE 'cpu'
    new = b"X" + struct.pack("<I", len(device)) + device.encode()
    if old not in pickle:
        raise SystemExit("no 'cpu' storage location in the pickle")
    return pickle.replace(old, new)


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    device = sys.argv[3] if len(sys.argv) > 3 else "cuda:0"
    changed = 0
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = retag(data, device)
                changed += 1
            zout.writestr(info.filename, data)
    if not changed:
        raise SystemExit("no data.pkl in the archive")


if __name__ == "__main__":
    main()
