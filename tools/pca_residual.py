#!/usr/bin/python3
"""How well a PCA output basis can represent a training grid's target SEDs (issue #15).

For each star of each grid FITS (csst-flatcube grid output: table GRID with TARGET, TMASK), the log target
over its valid pixels is fitted by least squares with the model's basis (pca_mean + c pca_basis, plus a free
log offset for the flux normalisation); the RMS of what is left, per band, is the best any network with that
output basis can do on that star. Prints the median and 84th percentile over stars.

  /usr/bin/python3 tools/pca_residual.py network/models/uara_default out/grid/grid.fits out/grid/miles_half.fits
Needs python3-numpy and python3-torch (Debian).
"""
import sys
import numpy as np
import torch


def fits_table(path, extname):
    """A binary table HDU as a numpy record array (enough of FITS for the grid files)."""
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        hdr = {}
        while True:
            block = data[pos:pos + 2880]
            pos += 2880
            cards = [block[i * 80:(i + 1) * 80].decode("ascii", "replace") for i in range(36)]
            done = False
            for card in cards:
                if card[:8].strip() == "END":
                    done = True
                    break
                if card[8:10] == "= ":
                    hdr[card[:8].strip()] = card[10:].split("/")[0].strip().strip("'").strip()
            if done:
                break
        size = 0
        if int(hdr.get("NAXIS", 0)) > 0:
            size = abs(int(hdr["BITPIX"])) // 8
            for i in range(1, int(hdr["NAXIS"]) + 1):
                size *= int(hdr["NAXIS%d" % i])
            size += int(hdr.get("PCOUNT", 0))
        if hdr.get("EXTNAME") == extname:
            codes = {"E": ">f4", "D": ">f8", "J": ">i4", "K": ">i8", "B": "u1", "I": ">i2", "L": "S1"}
            dt = []
            for i in range(1, int(hdr["TFIELDS"]) + 1):
                form = hdr["TFORM%d" % i]
                rep = int("".join(ch for ch in form if ch.isdigit()) or "1")
                code = [ch for ch in form if ch.isalpha()][0]
                name = hdr["TTYPE%d" % i]
                if code == "A":
                    dt.append((name, "S%d" % rep))
                else:
                    dt.append((name, codes[code], (rep,)) if rep > 1 else (name, codes[code]))
            return np.frombuffer(data[pos:pos + int(hdr["NAXIS1"]) * int(hdr["NAXIS2"])], dtype=np.dtype(dt),
                                 count=int(hdr["NAXIS2"]))
        pos += (size + 2879) // 2880 * 2880
    raise SystemExit("%s: no table HDU %s" % (path, extname))


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    buffers = {n: t for n, t in torch.jit.load(sys.argv[1] + ".pt").named_buffers()}
    if "member0.pca_basis" not in buffers:
        raise SystemExit(sys.argv[1] + ".pt: no PCA output basis (pixel outputs)")
    mean = buffers["member0.pca_mean"].double().numpy()
    basis = buffers["member0.pca_basis"].double().numpy()
    edges = np.exp(np.linspace(np.log(2500), np.log(10500), mean.size + 1))
    centre = np.sqrt(edges[:-1] * edges[1:])
    band = np.where(centre < 4100, 0, np.where(centre < 6350, 1, 2))
    for path in sys.argv[2:]:
        t = fits_table(path, "GRID")
        target = np.asarray(t["TARGET"], float).reshape(len(t), -1)
        valid = np.asarray(t["TMASK"]).reshape(len(t), -1) != 0
        rms = [[], [], []]
        for i in range(len(t)):
            ok = valid[i] & (target[i] > 0)
            if ok.sum() < 50:
                continue
            y = np.log(target[i][ok]) - mean[ok]
            x = np.hstack([basis[:, ok].T, np.ones((ok.sum(), 1))])
            coef = np.linalg.lstsq(x, y, rcond=None)[0]
            r = y - x @ coef
            for b in range(3):
                sel = band[ok] == b
                if sel.sum() > 5:
                    rms[b].append(np.sqrt(np.mean(r[sel] ** 2)))
        fmt = lambda q: " / ".join("%.4f" % np.percentile(v, q) if v else "-" for v in rms)
        print("%s: %d stars; RMS log residual GU / GV / GI: median %s, 84%% %s" % (path, len(t), fmt(50), fmt(84)))


if __name__ == "__main__":
    main()
