#!/usr/bin/env python3
"""Writes scikit-learn's bundled data sets as the files people have: real "own data" for minidl's tests.

Usage: sklearn_csv.py OUT_DIR. Each table is shuffled with a fixed seed and split 80/20 into NAME_train.csv and
NAME_test.csv; the digits become folders of PNG files. Exit 77 (skipped) when scikit-learn is not installed
(Debian: python3-sklearn).
- diabetes: 10 raw features (age, sex, bmi, ...) and a float 'target' column (regression);
- breast_cancer: 30 raw features in their own units, 'diagnosis' malignant/benign (binary, unscaled);
- iris: no header, 4 features and the species name in column 4;
- iris_sorted.csv: iris with a header, sorted by class (what a validation split takes whole classes from);
- digits/{train,test}/<name>/*.png: the 8x8 digits as grayscale PNGs in class folders named zero ... nine;
- digits_rgb/{train,test}/<name>/*.png: the same in colour, each class tinted its own way.
"""
import os
import struct
import sys
import zlib

try:
    import numpy as np
    from sklearn import datasets
except ImportError:
    print("SKIPPED: scikit-learn is not installed (apt-get install python3-sklearn)")
    sys.exit(77)


def write(path, header, rows):
    with open(path, "w") as out:
        if header:
            out.write(",".join(header) + "\n")
        for row in rows:
            out.write(",".join(row) + "\n")


def write_png(path, pixels, rgb):
    """pixels: rows of values 0..255 (gray) or of (r, g, b) triples; 8 bits per sample, no filtering."""
    height, width = len(pixels), len(pixels[0])
    raw = b"".join(b"\0" + bytes(v for p in row for v in (p if rgb else (p,))) for row in pixels)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2 if rgb else 0, 0, 0, 0)
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_digits(out_dir):
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    tints = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (255, 128, 0),
             (128, 0, 255), (0, 128, 128), (128, 128, 128)]
    d = datasets.load_digits()
    order = np.random.RandomState(0).permutation(len(d.target))
    cut = int(len(order) * 0.8)
    for i, index in enumerate(order):
        part = "train" if i < cut else "test"
        label = int(d.target[index])
        gray = [[int(v) * 255 // 16 for v in row] for row in d.images[index]]
        for folder, rgb in (("digits", False), ("digits_rgb", True)):
            path = os.path.join(out_dir, folder, part, names[label])
            os.makedirs(path, exist_ok=True)
            pixels = [[tuple(p * t // 255 for t in tints[label]) for p in row] for row in gray] if rgb else gray
            write_png(os.path.join(path, "%04d.png" % index), pixels, rgb)


def split(name, out_dir, header, rows):
    order = np.random.RandomState(0).permutation(len(rows))
    cut = int(len(rows) * 0.8)
    write(os.path.join(out_dir, name + "_train.csv"), header, [rows[i] for i in order[:cut]])
    write(os.path.join(out_dir, name + "_test.csv"), header, [rows[i] for i in order[cut:]])


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    d = datasets.load_diabetes(scaled=False)
    split("diabetes", out_dir, list(d.feature_names) + ["target"],
          [[repr(float(v)) for v in x] + [repr(float(y))] for x, y in zip(d.data, d.target)])
    b = datasets.load_breast_cancer()
    split("breast_cancer", out_dir, [n.replace(" ", "_") for n in b.feature_names] + ["diagnosis"],
          [[repr(float(v)) for v in x] + [str(b.target_names[y])] for x, y in zip(b.data, b.target)])
    i = datasets.load_iris()
    rows = [[repr(float(v)) for v in x] + [str(i.target_names[y])] for x, y in zip(i.data, i.target)]
    split("iris", out_dir, None, rows)
    write(os.path.join(out_dir, "iris_sorted.csv"), ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"], rows)
    write_digits(out_dir)


if __name__ == "__main__":
    main(sys.argv[1])
