"""Writes the bad-input corpus of forge-data (run from this folder: python3 make_corpus.py).

Every case is one file; MANIFEST.tsv says how it is loaded, the DataError variant it must give
and a text the message must contain. Plain Python 3 (gzip, no third-party packages).
"""
import gzip

def w(name, data):
    with open(name, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

def gz(name, data, mtime=0):
    # mtime fixed so that the files are reproducible byte for byte
    with open(name, "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=mtime) as g:
            g.write(data if isinstance(data, bytes) else data.encode())

w("dup_header.csv", "a,b,a,y\n1,2,3,4\n5,6,7,8\n")
w("target_leak.csv", "a,b,y\n1,2,3\n4,5,6\n")
w("repeated_feature.csv", "a,b,y\n1,2,3\n4,5,6\n")
w("empty.csv", "")
w("header_only.csv", "a,y\n")
w("blank_lines_only.csv", "\n\n\n")
w("ragged.csv", "a,y\n1,2\n3\n")
w("extra_field.csv", "a,y\n1,2\n3,4,5\n")
w("non_numeric.csv", "a,y\n1,2\n3,oops\n")
w("nan_cell.csv", "a,y\n1,2\nNaN,3\n")
w("inf_cell.csv", "a,y\n1,2\n-inf,3\n")
w("overflow_cell.csv", "a,y\n1,2\n1e400,3\n")
w("empty_cell.csv", "a,y\n1,2\n,3\n")
w("missing_target.csv", "a,b\n1,2\n")
w("bad_utf8.csv", b"a,y\n1,2\n\xff\xfe,3\n")
w("unbalanced_quote.csv", 'a,y\n1,2\n"3,4\n5,6\n')
rows = "\n".join(f"{i * 0.5},{i % 7}" if i != 13 else f"1e308,{i % 7}" for i in range(40))
w("dominated_1e308.csv", "a,y\n" + rows + "\n")
rows = "\n".join(f"{i * 0.5},{i % 7}" if i != 13 else f"-1e200,{i % 7}" for i in range(40))
w("dominated_1e200.csv", "a,y\n" + rows + "\n")
w("not_gzip.csv.gz", "a,y\n1,2\n")
full = gzip.compress(b"a,y\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(2000)), mtime=0)
w("truncated.csv.gz", full[: len(full) // 2])
w("empty.csv.gz", b"")
gz("bad_utf8.csv.gz", b"a,y\n1,2\n\xff\xfe,3\n")
gz("dup_header.csv.gz", "a,a,y\n1,2,3\n")
w("diabetes_not_gzip.gz", "59 2 32.1 101 157 93.2 38 4 4.8598 87\n")
gz("diabetes_bad_utf8.gz", b"59 2 32.1 101 157 93.2 38 4 \xff\xfe 87\n")
w("sst2_bad_label.tsv", "sentence\tlabel\ngood film\t1\nbad film\tpositive\n")
w("sst2_dup_header.tsv", "sentence\tlabel\tlabel\nx\t1\t0\n")
w("not_a_folder", "this is a file where a data folder was expected\n")
