"""Read the user's CSV and validate the task at the boundary, so nothing downstream meets bad input.

A user's file is the least trustworthy thing the app touches: it may carry a BOM, be saved by Excel
in cp1252, use semicolons, be gzipped, be a renamed PNG, have two columns called "id" or a label
with a typo. scikit-learn would fail on all of these, much later and with a traceback. Here every
such problem becomes an `InputError` whose message is a single line saying what to change; the
CLI prints it and exits with status 2. Once `prepare_task` has returned, the target exists, the
task type fits the target, every class can be stratified into the requested folds and holdout,
and the metrics fit the task, so the agents can spend their effort on modelling.
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import difflib
import gzip
import hashlib
import io
import lzma
import math
import re
import unicodedata
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast, get_args

import numpy as np
import pandas as pd
from pandas.api import types as ptypes
from pandas.tseries.api import guess_datetime_format

from tandem.tools.errors import InputError as InputError  # re-exported: its home before the light module
from tandem.tools.formatted_numbers import MISSING_MARKERS, parse_formatted_numbers
from tandem.tools.metrics import MetricError, resolve_metrics
from tandem.tools.numbers import SPLIT_NUMBERS, python_number
from tandem.tools.spec import CLASSIFICATION, TaskType

# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

_DELIMITERS = (",", ";", "\t", "|")
_HEAD_BYTES = 64 * 1024  # decompressed bytes used to sniff the encoding, delimiter and header
_NUL_WINDOW = 8 * 1024  # a NUL byte this early means binary content, not text
_SNIFF_LINES = 50
_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")  # latin-1 decodes any byte, so reading never fails on it

# Magic numbers of files users mistake for CSVs, to tell them what they actually passed.
_BINARY_KINDS: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PAR1", "a Parquet file; load it with pandas.read_parquet and save it with to_csv"),
    (b"ARROW1", "an Arrow/Feather file"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls workbook; save the sheet as CSV"),
    (b"SQLite format 3", "an SQLite database"),
    (b"PK\x03\x04", "a ZIP archive"),
)
Compression = Literal["gzip", "bz2", "xz", "zstd", "zip"]
_COMPRESSION_MAGIC: tuple[tuple[bytes, Compression], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
)
_DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,
)


def read_table(path: str | Path, *, keep: Iterable[str] = (), text: Iterable[str] = ()) -> pd.DataFrame:
    """Read a user's CSV (optionally gzip/bz2/xz/zip/zstd compressed) into a DataFrame.

    Why not plain `pd.read_csv`: it silently renames duplicate columns, turns a header-only or
    binary file into confusing frames, chokes on Excel's cp1252 and needs the delimiter to be
    told. Here the encoding is chosen by trying utf-8 (BOM stripped), cp1252 and latin-1 in turn;
    the delimiter among , ; tab | is sniffed from the first lines; compression is recognised by
    its magic bytes (so a gzipped file named .csv also works). Header names lose surrounding
    whitespace; cell values are left as written, except infinite numbers, read as missing
    (`infinities_as_missing`), and text columns of formatted numbers, read as numbers. The index
    is the 0-based data row number, header excluded, so rows can be reported back to the user. Columns are held in
    compact dtypes (`compact_frame`) except those named in `keep` (a run keeps its target as
    pandas reads it). Columns named in `text` are read as written, as text: a model that learnt a
    column as text ("007", "A1") reads it so whatever the other rows of a new file hold, where
    guessing from the file made "007" the number 7 when no row had a letter. Raises `InputError`.
    """
    return read_table_hashed(path, keep=keep, text_columns=text)[0]


def read_table_hashed(
    path: str | Path, *, keep: Iterable[str] = (), text_columns: Iterable[str] = ()
) -> tuple[pd.DataFrame, str]:
    """`read_table`, and the hex SHA-256 of the file's bytes, taken in the same pass over the file.

    A run keys its data by this hash (the same bytes mean the same data, whatever the file is
    called) and checks it when it reopens the file; hashing while parsing saves a second read.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such file: {p}; check the path (relative paths start at {Path.cwd()})")
    if p.is_dir():
        raise InputError(f"{p} is a directory; give the path of a CSV file inside it")
    if not p.is_file():  # a FIFO or a terminal waits forever for bytes; /dev/zero never ends
        raise InputError(f"{p} is not a regular file (a pipe, a device or a socket); save the data to a CSV file first")
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            magic = fh.read(16)
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or exc}") from None
    if size == 0:
        raise InputError(f"{p} is empty (0 bytes); export the data again with a header row and data rows")

    compression = _detect_compression(p, magic)
    head, truncated = _read_head(p, compression)
    encodings = _candidate_encodings(p, head)
    text = _decode_head(head, encodings[0], final=not truncated)
    if truncated:  # the last line may be cut: keep whole lines only
        cut = max(text.rfind("\n"), text.rfind("\r"))
        text = text[:cut] if cut > 0 else text
    if not text.strip():
        raise InputError(f"{p} is empty (no column names); export the data again with a header row")

    # Excel's "sep=;" first line names the delimiter; the header is the line after it
    excel_sep = re.match(r'\ufeff?"?sep=([,;\t|])"?[ \t]*(?:\r\n|\n|\r|$)', text)
    skip = 1 if excel_sep else 0
    if excel_sep:
        text = text[excel_sep.end() :]
    delimiter = excel_sep.group(1) if excel_sep else _sniff_delimiter(text)
    header = _raw_header(text, delimiter)
    if truncated and not re.search(r"[\r\n]", text):  # the head ends inside the header: its last name is cut
        header = _whole_header(p, compression, delimiter, encodings[0], skip)
    _check_duplicate_names(p, header)
    decimal = _sniff_decimal(text, delimiter)
    as_text = set(text_columns)
    raw_text = [raw for raw, name in zip(header, _clean_names(header), strict=True) if name in as_text]
    df, sha256 = _parse(p, compression, delimiter, decimal, encodings, skip, raw_text)
    if len(header) < df.shape[1]:  # a header longer than the sniffed head: pandas renamed its repeats ("a.1")
        _check_duplicate_names(p, _whole_header(p, compression, delimiter, encodings[0], skip))

    df.columns = _clean_names([str(c) for c in df.columns])
    blank = [c for c, raw in zip(df.columns, _padded(header, len(df.columns)), strict=True) if not raw.strip()]
    empty_blank = [c for c in blank if c.startswith("Unnamed: ") and df[c].isna().all()]
    if empty_blank:  # a trailing delimiter in the header makes an empty, nameless column: drop it
        df = df.drop(columns=empty_blank)
    if len(df) == 0:
        raise InputError(f"{p} has no data rows, only a header; export the data again with its rows")
    df = _formatted_numbers_as_numbers(df, decimal, skip=as_text)
    return compact_frame(_infinities_as_missing(df), keep=keep), sha256


#: `DataFrame.attrs` key under which `read_table` lists the text columns it read as numbers, each
#: with one of its cells as written, so that `prepare_task` can tell the user.
READ_AS_NUMBERS = "tandem_read_as_numbers"


#: `DataFrame.attrs` key under which `read_table` counts, by column, the infinite cells it read as
#: missing (`infinities_as_missing`).
INFINITE_AS_MISSING = "tandem_infinite_as_missing"


def _formatted_numbers_as_numbers(df: pd.DataFrame, decimal: str = ".", skip: Iterable[str] = ()) -> pd.DataFrame:
    """The frame with every text column that holds only formatted numbers ("$1,234.50", "45%")
    turned into those numbers (`tools.formatted_numbers`); other columns are left as read.

    A conversion the user did not ask for is said, not silent: the converted columns and, for
    each, its first cell that plain number parsing would not read go in `attrs[READ_AS_NUMBERS]`.
    """
    out = df
    examples: dict[str, str] = {}
    skipped = set(skip)
    for name in df.columns:
        if name in skipped:
            continue
        numbers = parse_formatted_numbers(df[name], decimal)
        if numbers is not None:
            out = out.copy(deep=False) if out is df else out  # the caller's frame is not changed
            out[name] = numbers
            raw = df[name]
            unread = raw[raw.notna() & pd.to_numeric(raw, errors="coerce").isna()]
            examples[str(name)] = str(unread.iloc[0]) if len(unread) else str(raw.dropna().iloc[0])
    if examples:
        out.attrs[READ_AS_NUMBERS] = examples
    return out


def _read_as_numbers_note(df: pd.DataFrame) -> str | None:
    """What the reader turned from text into numbers, with a cell of each column as written."""
    examples: dict[str, str] = df.attrs.get(READ_AS_NUMBERS) or {}
    if not examples:
        return None
    shown = [
        f"{_short(name)} ({_short(cell)}{' as missing' if cell.strip().lower() in MISSING_MARKERS else ''})"
        for name, cell in examples.items()
    ]
    return f"read text columns as numbers: {listed_text(shown)}"


#: A string column becomes categorical when it has at most this many distinct values per
#: non-missing row: below it the codes (1-4 bytes a row) plus one copy of each value take less
#: memory than a string per row; above it (identifiers, free text) they would take more.
COMPACT_MAX_UNIQUE_RATIO = 0.5


def compact_frame(df: pd.DataFrame, *, keep: Iterable[str] = ()) -> pd.DataFrame:
    """The same values in fewer bytes: what a run holds in memory (docs/decisions.md, "Compact dtypes").

    Why: a 1M x 30 table read with pandas' defaults spends most of its memory on string columns,
    and every copy of the development part (fold tasks, delivery) pays it again. Here, column by
    column (so the peak is the table plus one column):
    - a string column with few distinct values (`COMPACT_MAX_UNIQUE_RATIO`) becomes `category`
      (integer codes over one copy of each string); the values, missing cells and their order of
      appearance are unchanged, and the builders never see the dtype: every categorical column
      passes `tools.builder.as_categories`, which turns it back into the same strings before an
      encoder (so LightGBM and HistGradientBoosting never treat it as a native categorical);
    - an int64 column becomes the smallest signed integer type that holds its values (lossless);
    - float64 columns stay float64: float32 is lossless only for values that happen to fit it,
      and a rounded feature would silently change model results.
    Columns in `keep` (the target) are left as read. `logical_dtype` names a column's dtype as
    the default reading gives it, for the places that report or enforce dtypes (the profile, the
    delivered model's input schema).
    """
    kept = set(keep)
    df = df.copy(deep=False)  # a new frame sharing the columns (copy-on-write): the caller's is not changed
    for name in list(df.columns):
        if name in kept:
            continue
        col = df[name]
        if isinstance(col.dtype, pd.StringDtype) or col.dtype == object:
            present = int(col.notna().sum())
            if present == 0 or not _all_strings(col):
                continue
            categorical = col.astype("category")
            if len(categorical.cat.categories) <= COMPACT_MAX_UNIQUE_RATIO * present:
                df[name] = categorical
        elif col.dtype == np.int64 and len(col):
            low, high = int(col.min()), int(col.max())
            for small in (np.int8, np.int16, np.int32):
                info = np.iinfo(small)
                if info.min <= low and high <= info.max:
                    df[name] = col.astype(small)
                    break
    return df


def _all_strings(col: pd.Series) -> bool:
    """An object column of Python strings only (a frame built in Python may mix types: left alone)."""
    if isinstance(col.dtype, pd.StringDtype):
        return True
    return all(isinstance(value, str) for value in col.dropna())


def logical_dtype(series: pd.Series) -> str:
    """The dtype name of a column as pandas' default reading gives it, whatever `compact_frame` did.

    A categorical column reports its values' dtype (`str`), a downcast integer `int64`: the
    profile and the delivered model's schema then say what the data is, not how it is stored,
    and a user's frame of plain strings or large integers is coerced to the right kind.
    """
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return str(dtype.categories.dtype)
    if dtype in (np.int8, np.int16, np.int32):
        return "int64"
    return str(dtype)


#: How many values of a date column decide its format (`guess_date_format`).
DATE_FORMAT_SAMPLE = 1_000


def guess_date_format(values: pd.Series) -> str | None:
    """The strptime format that reads the most of a text column's dates, among those pandas guesses
    month-first and day-first from its first values (None when it guesses none).

    Why not the first value's guess alone: "01/02/2020" reads month-first, so a column written
    day-first (as most of the world writes dates) read its first twelve days of every month as
    months, and only the rest by a slower per-value fallback. On a tie (every sampled day is
    12 or less) the first month-first guess wins, as pandas would choose.
    """
    sample = values.dropna().astype(str).iloc[:DATE_FORMAT_SAMPLE]
    candidates: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for value in sample.iloc[:20]:
            for dayfirst in (False, True):
                fmt = guess_datetime_format(value, dayfirst=dayfirst)
                if fmt is not None and fmt not in candidates:
                    candidates.append(fmt)
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        parsed = {fmt: int(parse_dates(sample, fmt).notna().sum()) for fmt in candidates}
    return max(candidates, key=parsed.__getitem__)


def parse_dates(values: pd.Series, fmt: str | None) -> pd.Series:
    """Dates parsed leniently (unparseable → NaT), without pandas' format-inference warnings.

    Mixed UTC offsets (local times across a daylight-saving change, "+01:00" then "+02:00")
    cannot share one dtype, and pandas refuses them even with errors="coerce"; they are all
    expressed in UTC instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            return pd.to_datetime(values, errors="coerce", format=fmt)
        except (ValueError, TypeError, OverflowError):
            return pd.to_datetime(values, errors="coerce", format=fmt, utc=True)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed in 1 MiB chunks so a large CSV never sits in memory twice.

    Runs are keyed by it: the same bytes mean the same data, whatever the file is called.
    """
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def _detect_compression(p: Path, magic: bytes) -> Compression | None:
    """Compression from the magic bytes, so a misnamed file still reads and a PNG never 'decompresses'."""
    for prefix, name in _COMPRESSION_MAGIC:
        if magic.startswith(prefix):
            if name == "zip":
                return _check_zip(p)
            return name
    return None


def _check_zip(p: Path) -> Compression:
    try:
        with zipfile.ZipFile(p) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{p} is not a readable CSV: a damaged ZIP archive ({exc})") from None
    if "xl/workbook.xml" in names or "[Content_Types].xml" in names:
        raise InputError(f"{p} is an Excel/Office workbook, not a CSV; save the sheet as CSV and pass that")
    if len(names) != 1:
        listed = ", ".join(repr(n) for n in names[:3]) + (", …" if len(names) > 3 else "")
        raise InputError(f"{p} is a ZIP archive with {len(names)} files ({listed}); unzip it and pass one CSV")
    return "zip"


def _open_decompressed(p: Path, compression: Compression | None) -> IO[bytes]:
    if compression == "gzip":
        return cast(IO[bytes], gzip.open(p, "rb"))
    if compression == "bz2":
        return cast(IO[bytes], bz2.open(p, "rb"))
    if compression == "xz":
        return cast(IO[bytes], lzma.open(p, "rb"))
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:  # pragma: no cover - zstandard ships with the venv
            raise InputError(f"{p} is zstd-compressed; install 'zstandard' or decompress it first") from None
        return cast(IO[bytes], zstandard.ZstdDecompressor().stream_reader(p.open("rb"), closefd=True))
    return p.open("rb")


def _read_head(p: Path, compression: Compression | None) -> tuple[bytes, bool]:
    """The first decompressed bytes, and whether the file goes on beyond them.

    Binary content is caught here, before pandas can produce a frame of mojibake.
    """
    try:
        if compression == "zip":
            with zipfile.ZipFile(p) as zf:
                member = next(n for n in zf.namelist() if not n.endswith("/"))
                with zf.open(member) as fh:
                    head = fh.read(_HEAD_BYTES + 1)
        else:
            with _open_decompressed(p, compression) as fh:
                head = fh.read(_HEAD_BYTES + 1)
    except _DECOMPRESS_ERRORS as exc:
        what = compression or "file"
        raise InputError(f"{p} is not a readable CSV: the {what} data is damaged or truncated ({exc})") from None
    truncated = len(head) > _HEAD_BYTES
    head = head[:_HEAD_BYTES]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return head, truncated  # UTF-16 text has NULs by design
    if b"\x00" in head[:_NUL_WINDOW]:
        kind = next((k for m, k in _BINARY_KINDS if head.startswith(m)), None)
        reason = f"it looks like {kind}" if kind else "it holds binary content (NUL bytes), not text"
        raise InputError(f"{p} is not a readable CSV: {reason}")
    return head, truncated


def _candidate_encodings(p: Path, head: bytes) -> tuple[str, ...]:
    """Encodings to try in order, starting with the first one that decodes the head."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return ("utf-16",)
    for i, enc in enumerate(_ENCODINGS):
        try:
            codecs.getincrementaldecoder(enc)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        return _ENCODINGS[i:]
    return ("latin-1",)  # pragma: no cover - latin-1 decodes every byte


def _decode_head(head: bytes, encoding: str, *, final: bool) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    return decoder.decode(head, final=final)


def _sample_rows(text: str, delimiter: str) -> list[list[str]]:
    """The first non-blank records of the sample, parsed with `delimiter` (quotes honoured)."""
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            if row and any(cell.strip() for cell in row):
                rows.append(row)
                if len(rows) >= _SNIFF_LINES:
                    break
    except csv.Error:
        pass  # e.g. a giant quoted field: judge on the rows read so far
    return rows


def _sniff_delimiter(text: str) -> str:
    """Pick among , ; tab | the delimiter that splits the header and every sampled row alike.

    A candidate must split the header into at least two columns. The one whose rows all have the
    header's width wins, the widest such split first: a ',' inside a ';'-separated text column
    splits consistently too, but into fewer columns. csv.Sniffer's guess breaks ties (then the
    order , ; tab |); ',' is the answer when nothing splits at all.
    """
    lines = "\n".join(text.splitlines()[:_SNIFF_LINES])
    candidates: list[str] = []
    with contextlib.suppress(csv.Error):  # the Sniffer gives up on some files; the scoring does not
        candidates.append(csv.Sniffer().sniff(lines, delimiters="".join(_DELIMITERS)).delimiter)
    candidates += [d for d in _DELIMITERS if d not in candidates]

    best: tuple[float, int, int] | None = None
    choice = ","
    for order, delim in enumerate(candidates):
        rows = _sample_rows(text, delim)
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        body = rows[1:]
        consistency = sum(len(r) == width for r in body) / len(body) if body else 1.0
        score = (consistency, width, -order)
        if best is None or score > best:
            best, choice = score, delim
    return choice


def _sniff_decimal(text: str, delimiter: str) -> str:
    """',' when a semicolon file writes decimals the European way (1,5) and never with a point.

    A point between groups of three digits ("1.001", "12.500,75") is the European thousands
    separator, not a decimal point: such cells do not vote for '.', and are then read as the
    formatted numbers they are (`parse_formatted_numbers`, with a note)."""
    if delimiter != ";":
        return "."
    cells = [c.strip() for row in _sample_rows(text, delimiter)[1:] for c in row]
    grouped = re.compile(r"[-+]?[1-9]\d{0,2}(?:\.\d{3})+")
    comma = sum(bool(re.fullmatch(r"[-+]?\d+,\d+", c) or re.fullmatch(grouped.pattern + r",\d+", c)) for c in cells)
    point = sum(bool(re.fullmatch(r"[-+]?\d*\.\d+", c)) and not grouped.fullmatch(c) for c in cells)
    return "," if comma and not point else "."


def _whole_header(p: Path, compression: Compression | None, delimiter: str, encoding: str, skip: int) -> list[str]:
    """The header's names as written, read as a data row so that pandas does not rename repeats."""
    first = pd.read_csv(
        p, sep=delimiter, header=None, nrows=1, dtype=str, keep_default_na=False, compression=compression,
        encoding=encoding, encoding_errors="replace", skiprows=skip,
    )  # fmt: skip
    return [str(v) for v in first.iloc[0]] if len(first) else []


def _raw_header(text: str, delimiter: str) -> list[str]:
    rows = _sample_rows(text, delimiter)
    return rows[0] if rows else []


def _clean_names(names: list[str]) -> list[str]:
    """Strip surrounding whitespace (and a BOM that survived a non-UTF-8 decode) from header names,
    in Unicode's composed form (NFC): a header written on macOS may spell "café" as "cafe" plus an
    accent, which looks the same as the name a user types and would not match it."""
    cleaned = [unicodedata.normalize("NFC", n.strip()) for n in names]
    if cleaned:
        cleaned[0] = cleaned[0].removeprefix("\ufeff").removeprefix("ï»¿").strip()
    return cleaned


def clean_names(names: list[str]) -> list[str]:
    """Header names as a run knows them (what `read_table` does to a header), so a frame read by
    plain pandas can be matched against a run's columns (`tools/delivered_model.py`)."""
    return _clean_names(names)


def _padded(names: list[str], n: int) -> list[str]:
    return (names + ["x"] * n)[:n]


def _check_duplicate_names(p: Path | str, header: Sequence[str]) -> None:
    """pandas would rename a second 'a' to 'a.1' and the user would never know which one we used."""
    counts = Counter(n for n in _clean_names(list(header)) if n)
    dups = [(n, k) for n, k in counts.items() if k > 1]
    if dups:
        listed = ", ".join(f"{n!r} (x{k})" for n, k in dups[:5]) + (", …" if len(dups) > 5 else "")
        raise InputError(f"{p} has duplicate column names: {listed}; rename them so each column is unique")


class _HashingReader(io.RawIOBase):
    """A binary file that hashes every byte read through it, so parsing a file also fingerprints it."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw = raw
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self.digest.update(memoryview(buffer)[:n])
        return int(n or 0)

    def hexdigest(self) -> str:
        """The hash of the whole file: whatever the parser left unread is read (and hashed) first."""
        while self.read(1 << 20):
            pass
        return self.digest.hexdigest()


def _parse(
    p: Path,
    compression: Compression | None,
    delimiter: str,
    decimal: str,
    encodings: Sequence[str],
    skip: int = 0,
    text: Sequence[str] = (),
) -> tuple[pd.DataFrame, str]:
    """Run pandas' C parser, falling back to the next encoding when the bytes do not decode; return
    the frame and the SHA-256 of the file's bytes, hashed as the parser reads them.

    A ZIP archive keeps its directory at the end, so it cannot be read front to back: its
    (compressed) bytes are read whole and parsed from memory instead.
    """
    for i, encoding in enumerate(encodings):
        try:
            with (
                warnings.catch_warnings(record=True) as caught,
                p.open("rb") as fh,
            ):
                warnings.simplefilter("always", pd.errors.ParserWarning)
                source: IO[bytes]
                if compression == "zip":
                    data = fh.read()
                    source, sha256 = io.BytesIO(data), hashlib.sha256(data).hexdigest()
                else:
                    hashing = _HashingReader(fh)
                    source = io.BufferedReader(hashing, buffer_size=1 << 20)
                df = pd.read_csv(
                    source,
                    sep=delimiter,
                    decimal=decimal,
                    # pandas' C parser decodes plain utf-8 natively (faster) and drops a BOM itself
                    encoding="utf-8" if encoding == "utf-8-sig" else encoding,
                    encoding_errors="replace" if encoding == "utf-16" else "strict",
                    compression=compression,
                    engine="c",
                    low_memory=False,
                    index_col=False,  # never silently turn the first column into the index
                    skiprows=skip,  # Excel's "sep=" line
                    dtype=dict.fromkeys(text, str) or None,  # columns a model knows as text, as written
                )
                if compression != "zip":
                    sha256 = hashing.hexdigest()
        except UnicodeDecodeError:
            if i + 1 < len(encodings):
                continue
            raise InputError(f"{p} is not a readable CSV: its text encoding is not recognised") from None
        except pd.errors.EmptyDataError:
            raise InputError(f"{p} is empty (no column names); export the data again with a header row") from None
        except pd.errors.ParserError as exc:
            raise InputError(f"{p} is not a readable CSV: {_parser_reason(str(exc))}") from None
        except _DECOMPRESS_ERRORS as exc:
            raise InputError(f"{p} is not a readable CSV: the data is damaged or truncated ({exc})") from None
        except ValueError as exc:  # anything else pandas rejects; its first line is the reason
            raise InputError(f"{p} is not a readable CSV: {_parser_reason(str(exc))}") from None
        if any("loss of data" in str(w.message) for w in caught):
            raise InputError(
                f"{p} is not a readable CSV: some rows have more fields than the header's {df.shape[1]} "
                "columns; check the delimiter and quoting, or give every column a name"
            )
        return df, sha256
    raise AssertionError("unreachable")  # pragma: no cover


def _parser_reason(message: str) -> str:
    """pandas' C-parser messages, rephrased as what is wrong in the file."""
    if m := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message):
        expected, line, saw = m.groups()
        return (
            f"line {line} has {saw} fields but the header has {expected}; "
            "check the delimiter and quote fields that contain it"
        )
    if m := re.search(r"EOF inside string starting at row (\d+)", message):
        return f"a quoted field opened near data row {m.group(1)} is never closed; check the quotes"
    first = message.strip().splitlines()[0] if message.strip() else "unknown parser error"
    first = first.removeprefix("Error tokenizing data. ").removeprefix("C error: ")
    return first[:160]


# --------------------------------------------------------------------------------------------
# Task inference
# --------------------------------------------------------------------------------------------

_MAX_MULTICLASS_VALUES = 20
_MAX_MULTICLASS_RATIO = 0.05


def infer_task_type(y: pd.Series) -> TaskType:
    """Guess the task from the target's values, the way a person glancing at the column would.

    Text, booleans and categories are labels: two of them make a binary task, more a multiclass
    one. Numbers are labels only when they look like codes: integer-valued with at most two
    distinct values (0/1), or with 3 to 20 values that each repeat a lot (fewer distinct values
    than 5% of the rows). Anything else numeric is a quantity to regress. Missing values are
    ignored. The caller can always force the task type instead.
    """
    values = _as_numeric_if_possible(y.dropna())
    if len(values) == 0:
        raise InputError(f"target column {_name(y.name)} has no values")
    dtype = values.dtype
    if ptypes.is_datetime64_any_dtype(dtype) or ptypes.is_timedelta64_dtype(dtype):
        raise InputError(
            f"target column {_name(y.name)} holds dates or durations; choose a numeric or categorical target"
        )
    if ptypes.is_complex_dtype(dtype):
        raise InputError(f"target column {_name(y.name)} holds complex numbers; choose a real-valued target")
    if ptypes.is_bool_dtype(dtype) or not ptypes.is_numeric_dtype(dtype):
        return "binary" if values.nunique() == 2 else "multiclass"
    arr = values.to_numpy(dtype=float)
    if not _integer_valued(arr):
        return "regression"
    distinct = len(np.unique(arr))
    if distinct <= 2:
        return "binary"
    if distinct <= _MAX_MULTICLASS_VALUES and distinct / len(arr) < _MAX_MULTICLASS_RATIO:
        return "multiclass"
    return "regression"


def positive_class(y: pd.Series) -> Any:
    """The class that precision, recall and F1 are about: the minority one.

    In imbalanced problems the rare class (fraud, churn, '>50K') is what the user cares about,
    and scoring the majority class would make a useless model look good. On an exact tie the
    larger label by sorted order wins (1 over 0, 'yes' over 'no'). Returns a plain Python value.
    """
    counts = y.dropna().value_counts()
    if len(counts) != 2:
        raise InputError(f"a positive class needs a binary target; {_name(y.name)} has {len(counts)} distinct values")
    fewest = counts.min()
    tied = [_plain(label) for label, count in counts.items() if count == fewest]
    return _sorted_labels(tied)[-1]


# --------------------------------------------------------------------------------------------
# Task preparation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PreparedTask:
    """A task that has passed every check, with the facts the rest of the app relies on.

    `eq=False` because DataFrames do not compare to a single bool; identity is what matters.
    """

    frame: pd.DataFrame  # rows with a target value only; original index kept (0-based CSV data rows)
    target: str
    task_type: TaskType
    classes: tuple[Any, ...]  # sorted plain Python labels; () for regression
    positive_class: Any  # None unless binary
    metrics: tuple[str, ...]  # primary first
    primary_metric: str
    notes: tuple[str, ...]  # things said to the user, e.g. "dropped 3 rows with a missing target"
    holdout: pd.DataFrame | None = None  # the separate holdout file's rows with a target, if one was given


def prepare_task(
    df: pd.DataFrame,
    target: str,
    *,
    metrics: Sequence[str] | str | None = None,
    primary: str | None = None,
    folds: int = 5,
    holdout: float = 0.2,
    task_type: TaskType | str | None = None,
    holdout_frame: pd.DataFrame | None = None,
) -> PreparedTask:
    """Check that `target` in `df` makes a learnable task and settle its type, classes and metrics.

    Everything a later step would trip over is caught here, with the fix in the message: a
    misspelt target, too few rows for the folds, a class too rare to appear in every fold of the
    development part, a metric that does not fit, a holdout file that lacks columns or has unseen
    labels. Rows with no target value cannot be learnt from or scored, so they are dropped (and
    the user is told). `holdout` is the share of rows kept aside for the final check; with a
    separate `holdout_frame` it is ignored. Raises `InputError`.
    """
    notes: list[str] = []
    if target not in df.columns:  # header names are read composed (`_clean_names`): "café" typed either way
        target = unicodedata.normalize("NFC", target)
    _check_folds_and_holdout(folds, holdout, holdout_frame is not None)
    _check_columns(df, target)
    read_as_numbers = _read_as_numbers_note(df)
    if read_as_numbers:
        notes.append(read_as_numbers)
    if task_type is not None and task_type not in get_args(TaskType):
        raise InputError(f"unknown task type {task_type!r}; use one of {', '.join(get_args(TaskType))}")

    infinite = _infinities_note(df, what="")
    if infinite:
        notes.append(infinite)
    frame, dropped = _drop_missing_target(df, target, what="the data")
    if dropped:
        notes.append(f"dropped {dropped} rows with a missing target {target!r}")
    split = 0.0 if holdout_frame is not None else holdout
    _check_row_count(len(frame), folds, split)

    y = _as_numeric_if_possible(frame[target])
    _check_spaced_labels(y, target)
    inferred = infer_task_type(y)
    chosen: TaskType = cast(TaskType, task_type) if task_type is not None else inferred
    if chosen in CLASSIFICATION:
        if dropped:  # pandas reads these spellings as missing: a class "None" or "NA" (North America) is lost
            note = notes.index(f"dropped {dropped} rows with a missing target {target!r}")
            notes[note] += " (empty, or written NA, N/A, None, null or NaN: if one is a class, write it another way)"
        y = _integer_labels(y)
        cased = _case_clash_note(y, target)
        if cased:
            notes.append(cased)
    frame = _with_target(frame, target, y)

    classes: tuple[Any, ...] = ()
    pos: Any = None
    if chosen == "regression":
        _check_regression_target(y, target, forced=task_type is not None)
        if _counts_the_rows(y):
            notes.append(
                f"target {target!r} numbers the rows ({_plain(y.iloc[0])} to {_plain(y.iloc[-1])}, one up each row): "
                "a model of it learns the file's order, not the rows' contents; check that it is the column to predict"
            )
    else:
        classes = check_classes(y, target, chosen, folds, split, len(frame))
        if chosen == "binary":
            pos = positive_class(y)
            share = float((y == pos).mean())
            why = "the classes are balanced, so the larger label" if share == 0.5 else f"the minority, {share:.0%}"
            notes.append(f"positive class for precision/recall/F1 is {pos!r} ({why})")
    numeric = ptypes.is_numeric_dtype(y.dtype) and not ptypes.is_bool_dtype(y.dtype)
    ambiguous = numeric and 2 < y.nunique() <= _MAX_MULTICLASS_VALUES and _integer_valued(y.to_numpy(dtype=float))
    if task_type is None and ambiguous:  # a few integer codes could be classes or counts: say which we chose
        other = "regression" if inferred == "multiclass" else "multiclass"
        notes.append(
            f"treating integer target {target!r} ({y.nunique()} distinct values) as {inferred}; "
            f"use task type {other!r} to override"
        )

    chosen_metrics, primary_metric = _resolve(metrics, primary, chosen)
    if "rmsle" in chosen_metrics:
        _check_non_negative(y, target, "the data")

    holdout_rows: pd.DataFrame | None = None
    if holdout_frame is not None:
        holdout_rows = _check_holdout_frame(df, holdout_frame, target, chosen, classes, chosen_metrics, notes)

    return PreparedTask(
        frame=frame,
        target=target,
        task_type=chosen,
        classes=classes,
        positive_class=pos,
        metrics=chosen_metrics,
        primary_metric=primary_metric,
        notes=tuple(notes),
        holdout=holdout_rows,
    )


def _check_folds_and_holdout(folds: int, holdout: float, has_holdout_frame: bool) -> None:
    checked = {"folds": folds} if has_holdout_frame else {"folds": folds, "holdout": holdout}
    for name, value in checked.items():
        if problem := SPLIT_NUMBERS[name].problem(name, value):
            raise InputError(problem)


#: What a request that names no holdout share, folds or seed gets (a Studio form left blank).
SPLIT_DEFAULTS: dict[str, Any] = {"holdout": 0.2, "folds": 5, "seed": 0}


def split_numbers(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request's holdout share, folds and seed (the default for one it leaves out), or an
    `InputError` naming the first that breaks its rule (tools/numbers.py: `SPLIT_NUMBERS`, which
    `tandem run --holdout/--folds/--seed` parses with).

    Why: these were coerced (`int(folds or 5)`), so `folds=2.5` ran 2 folds, `folds=0` ran 5,
    `holdout=0` held out a fifth and `seed=1.5` seeded with 1; a bad value is named instead."""
    numbers: dict[str, Any] = {}
    for name, rule in SPLIT_NUMBERS.items():
        value = request.get(name)
        if value is None:
            value = SPLIT_DEFAULTS[name]
        elif problem := rule.problem(name, value):
            raise InputError(problem)
        numbers[name] = python_number(value)
    return numbers


def _check_columns(df: pd.DataFrame, target: str) -> None:
    names = [str(c) for c in df.columns]
    _check_duplicate_names("the data", names)
    if target not in df.columns:
        raise InputError(_not_found(target, names))
    if df.shape[1] < 2:
        raise InputError(
            f"the data has only the target column {target!r}; add feature columns "
            "(if the file has several, its delimiter was not recognised: use , ; tab or |)"
        )
    if len(df) == 0:
        raise InputError("the data has no rows")


def _not_found(target: str, names: list[str]) -> str:
    folded = target.strip().casefold()
    close = [n for n in names if n.strip().casefold() == folded]
    close += [n for n in difflib.get_close_matches(target, names, n=3, cutoff=0.6) if n not in close]
    by_case = {n.casefold(): n for n in names}
    close += [
        by_case[m] for m in difflib.get_close_matches(folded, list(by_case), n=3, cutoff=0.6) if by_case[m] not in close
    ]
    message = f"target column {target!r} not found; "
    if close:
        message += f"closest: {_listed(close[:3])}"
    else:
        message += f"columns are: {_listed(names)}"
    if names and sum(_looks_numeric(n) for n in names) > len(names) / 2:
        message += "; the first line looks like data: does the file lack a header row?"
    return message


def infinities_as_missing(column: pd.Series) -> pd.Series:
    """A float column with its infinite cells ("inf", "-Infinity" in a CSV) as missing, or the column itself.

    Why: no model of the playbook can learn from an infinite value (scikit-learn's estimators
    refuse the whole table), and one cell of "inf" is nearly always a division by zero upstream,
    that is a value nobody measured. The run and a prediction read them alike.
    """
    if not ptypes.is_float_dtype(column.dtype):
        return column
    infinite = np.isinf(column.to_numpy(dtype=float, na_value=np.nan))
    return column.mask(infinite) if infinite.any() else column


def _infinities_as_missing(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with `infinities_as_missing` applied to every column; `attrs[INFINITE_AS_MISSING]`
    counts the cells by column, so that `prepare_task` can tell the user."""
    counts: dict[str, int] = {}
    out = df
    for name in df.columns:
        column = df[name]
        cleaned = infinities_as_missing(column)
        if cleaned is not column:
            out = out.copy(deep=False) if out is df else out  # the caller's frame is not changed
            out[name] = cleaned
            counts[str(name)] = int(cleaned.isna().sum() - column.isna().sum())
    if counts:
        out.attrs[INFINITE_AS_MISSING] = counts
    return out


def _infinities_note(df: pd.DataFrame, *, what: str) -> str | None:
    counts: dict[str, int] = df.attrs.get(INFINITE_AS_MISSING) or {}
    if not counts:
        return None
    shown = [f"{_short(name)} ({count})" for name, count in counts.items()]
    return f"read {sum(counts.values())} infinite {what}values as missing: {listed_text(shown)}"


def _drop_missing_target(df: pd.DataFrame, target: str, *, what: str) -> tuple[pd.DataFrame, int]:
    missing = df[target].isna()
    if bool(missing.all()):
        raise InputError(
            f"target column {target!r} has no values in {what} (all {len(df)} rows are missing); "
            "choose another target column"
        )
    dropped = int(missing.sum())
    return (df.loc[~missing] if dropped else df), dropped


def _min_rows(folds: int, split: float) -> int:
    """Smallest row count whose development part (after sklearn's ceil'd holdout) has `folds` rows."""
    # n - ceil(n * split) never decreases as n grows and stays below `folds` up to folds / (1 - split) - 2,
    # so the search starts there: counting up from `folds` took a minute for folds = 10**9
    n = max(folds, int(folds / (1.0 - split)) - 2)
    while n - math.ceil(n * split) < folds:
        n += 1
    return n


def _check_row_count(n: int, folds: int, split: float) -> None:
    need = _min_rows(folds, split)
    if n < need:
        extra = f" plus a {split:.0%} holdout" if split else ""
        raise InputError(
            f"needs at least {need} rows with a target value for {folds}-fold cross-validation{extra}, "
            f"got {n}; add rows or lower folds"
        )


def _check_regression_target(y: pd.Series, target: str, *, forced: bool) -> None:
    if ptypes.is_bool_dtype(y.dtype) or not ptypes.is_numeric_dtype(y.dtype):
        examples = _listed(_sorted_labels([_plain(v) for v in y.unique()[:3]]))
        hint = "; pick a classification task type" if forced else ""
        raise InputError(f"regression needs a numeric target, but {target!r} holds values such as {examples}{hint}")
    infinite = int(np.isinf(y.to_numpy(dtype=float)).sum())
    if infinite:
        raise InputError(f"target column {target!r} has {infinite} infinite values; fix or remove those rows")
    if y.nunique() == 1:  # nothing to learn, and R² is undefined on every fold
        raise InputError(
            f"target column {target!r} has one value ({_plain(y.iloc[0])!r}) in every row; choose another target"
        )


def _counts_the_rows(y: pd.Series) -> bool:
    """Whether `y` goes up by exactly one from each row to the next: a row number (R's `rownames`,
    an exported index), which a run would model without error and without meaning."""
    values = y.to_numpy(dtype=float)
    return len(values) >= 20 and _integer_valued(values) and bool(np.all(np.diff(values) == 1))


def check_classes(y: pd.Series, target: str, task_type: str, folds: int, split: float, n_rows: int) -> tuple[Any, ...]:
    """Every class must reach every fold of the development part and both sides of the split."""
    counts = y.value_counts()
    classes = tuple(_sorted_labels([_plain(c) for c in counts.index]))
    if len(classes) < 2:
        raise InputError(
            f"target column {target!r} has only one class ({_short(classes[0])!s}); "
            "a classifier needs at least two: choose another target or add rows of other classes"
        )
    if task_type == "binary" and len(classes) != 2:
        raise InputError(
            f"task type 'binary' needs exactly 2 classes, but {target!r} has {len(classes)} "
            f"({_listed(classes)}); use 'multiclass'"
        )
    if task_type == "multiclass" and len(classes) == 2:
        raise InputError(f"task type 'multiclass' needs 3 or more classes, but {target!r} has 2; use 'binary'")
    need = _rows_per_class(folds, split)
    rare = [(_plain(c), int(k)) for c, k in counts.items() if _too_rare(int(k), folds, split)]
    if rare and len(classes) > 0.5 * n_rows:  # not labels at all: say so rather than list a thousand classes
        numeric = ptypes.is_numeric_dtype(y.dtype) and not ptypes.is_bool_dtype(y.dtype)
        looks = "a quantity: use task type 'regression'" if numeric else "an identifier or free text"
        raise InputError(
            f"target column {target!r} has {len(classes)} distinct values in {n_rows} rows, so it is not "
            f"a class label but {looks}; choose another target"
        )
    if rare:
        rare.sort(key=lambda ck: ck[1])
        listed = ", ".join(f"{_short(c)} ({_rows(k)})" for c, k in rare[:5])
        more = f" and {len(rare) - 5} more" if len(rare) > 5 else ""
        why = f"{folds} folds after a {split:.0%} holdout" if split else f"{folds} folds"
        numeric = ptypes.is_numeric_dtype(y.dtype) and not ptypes.is_bool_dtype(y.dtype)
        quantity = f"; or, if {target!r} is a quantity (a count, a score), use task type 'regression'"
        fitting = [f for f in range(folds - 1, 1, -1) if not _too_rare(rare[0][1], f, split)]
        lower = f", or lower folds to {fitting[0]}" if fitting else ""
        raise InputError(
            f"too few rows in class {listed}{more} of {target!r}: each class needs at least {need} ({why}); "
            f"add rows of these classes or merge them into others{lower}{quantity if numeric else ''}"
        )
    if split:
        n_test = math.ceil(n_rows * split)
        if n_test < len(classes):
            raise InputError(
                f"a {split:.0%} holdout of {n_rows} rows keeps {n_test} rows, fewer than the "
                f"{len(classes)} classes; raise holdout or add rows"
            )
    return classes


def _rows_per_class(folds: int, split: float) -> int:
    """Rows a class needs to reach every fold of the development part and, with a holdout, both sides."""
    return max(2 if split else 1, math.ceil(folds / (1.0 - split) - 1e-9))


def _too_rare(count: int, folds: int, split: float) -> bool:
    return count * (1.0 - split) + 1e-9 < folds or count < _rows_per_class(folds, split)


def _resolve(metrics: Sequence[str] | str | None, primary: str | None, task_type: str) -> tuple[tuple[str, ...], str]:
    names = metrics.split(",") if isinstance(metrics, str) else metrics
    try:
        return resolve_metrics(names, primary, task_type)
    except MetricError as exc:
        raise InputError(str(exc)) from None


def _check_non_negative(y: pd.Series, target: str, where: str) -> None:
    negative = y < 0
    if bool(negative.any()):
        raise InputError(
            f"metric 'rmsle' needs a non-negative target, but {target!r} has {int(negative.sum())} negative "
            f"values in {where} (min {_plain(y.min())!r}); choose rmse or mae instead"
        )


def _check_holdout_frame(
    df: pd.DataFrame,
    hf: pd.DataFrame,
    target: str,
    task_type: str,
    classes: tuple[Any, ...],
    metrics: tuple[str, ...],
    notes: list[str],
) -> pd.DataFrame:
    """The separate holdout file must look like the training data and carry only known labels."""
    have = {str(c) for c in hf.columns}
    _check_duplicate_names("the holdout file", [str(c) for c in hf.columns])
    missing = [str(c) for c in df.columns if str(c) not in have]
    if missing:
        raise InputError(f"the holdout file lacks {len(missing)} columns of the data: {_listed(missing)}")
    _check_holdout_numbers(df, hf, target)
    infinite = _infinities_note(hf, what="holdout ")
    if infinite:
        notes.append(infinite)
    rows, dropped = _drop_missing_target(hf, target, what="the holdout file")
    if dropped:
        notes.append(f"dropped {dropped} holdout rows with a missing target {target!r}")
    y = _as_numeric_if_possible(rows[target])
    if task_type == "regression":
        if ptypes.is_bool_dtype(y.dtype) or not ptypes.is_numeric_dtype(y.dtype):
            raise InputError(f"the holdout file's target {target!r} is not numeric; it must match the data")
        if "rmsle" in metrics:
            _check_non_negative(y, target, "the holdout file")
    else:
        y = _integer_labels(y)
        if any(isinstance(c, str) for c in classes) and ptypes.is_numeric_dtype(y.dtype):
            # the data's labels are text ("1", "2", "a"): a holdout of only "1" and "2" read as numbers is
            # the same labels, compared as the text the data holds
            y = y.map(lambda v: str(_plain(v)))
        known = set(classes)
        unseen = Counter(_plain(v) for v in y if _plain(v) not in known)
        if unseen:
            listed = ", ".join(f"{_short(c)} ({_rows(k)})" for c, k in unseen.most_common(5))
            spaced = {str(c).strip() for c in classes} & {c.strip() for c in unseen if isinstance(c, str)}
            hint = "; some differ from a known class only by spaces around them: remove those spaces" if spaced else ""
            raise InputError(
                f"the holdout file has labels of {target!r} never seen in the data: {listed}; "
                f"known classes are {_listed(classes)}{hint}"
            )
    return _with_target(rows, target, y)[list(df.columns)]  # the data's columns, in its order


def _check_holdout_numbers(df: pd.DataFrame, hf: pd.DataFrame, target: str) -> None:
    """A column of numbers in the data must hold numbers (or gaps) in the holdout file too.

    Why here: the models would meet the text only when scoring the holdout at delivery, after
    the whole search, and stop there with a traceback, at every resume as well."""
    for name in df.columns:
        if name == target or not ptypes.is_numeric_dtype(df[name].dtype) or ptypes.is_bool_dtype(df[name].dtype):
            continue
        column = hf[name]
        if ptypes.is_numeric_dtype(column.dtype):
            continue
        bad = np.flatnonzero((pd.to_numeric(column.astype(object), errors="coerce").isna() & column.notna()).to_numpy())
        if len(bad):
            more = f" and {len(bad) - 1} more rows" if len(bad) > 1 else ""
            raise InputError(
                f"the holdout file's column {str(name)!r} must hold numbers, as in the data, but row "
                f"{column.index[bad[0]]} holds {_short(column.iloc[bad[0]])}{more}; fix those cells or leave them blank"
            )


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _check_spaced_labels(y: pd.Series, target: str) -> None:
    """Labels that differ only by spaces around them ("Yes " beside "Yes") are one class written two
    ways: say so, rather than learn a four-class task from a binary one. A label written with
    spaces throughout (" >50K") is a label like any other."""
    clashes = _label_clashes(y, str.strip)
    if clashes:
        rows = int(y.isin([label for labels in clashes for label in labels if label != label.strip()]).sum())
        raise InputError(
            f"labels of {target!r} differ only by spaces around them ({_listed_clashes(clashes)}; "
            f"{_rows(rows)} with spaces), "
            "so one class is written two ways: remove the spaces in the file, then run again"
        )


def _case_clash_note(y: pd.Series, target: str) -> str | None:
    """Labels that differ only in case ("Yes" beside "yes") are kept as the classes they are written
    as (a code may mean something by its case), but nearly always they are one class typed two
    ways: say so, with the fix."""
    clashes = _label_clashes(y, lambda label: label.strip().casefold())
    if not clashes:
        return None
    return (
        f"labels of {target!r} that differ only in case are kept as separate classes ({_listed_clashes(clashes)}); "
        "if they are one class, write them alike in the file"
    )


def _label_clashes(y: pd.Series, same: Callable[[str], str]) -> list[list[str]]:
    """The text labels of `y` that `same` maps to one spelling, in groups of two or more (sorted)."""
    spellings: dict[str, list[str]] = {}
    for label in sorted(value for value in y.unique() if isinstance(value, str)):
        spellings.setdefault(same(label), []).append(label)
    return [labels for labels in spellings.values() if len(labels) > 1]


def _listed_clashes(clashes: list[list[str]]) -> str:
    return "; ".join(" and ".join(_short(label) for label in labels) for labels in clashes[:3])


def _as_numeric_if_possible(y: pd.Series) -> pd.Series:
    """An object column that holds only numbers (built in Python, not read from CSV) counts as numeric."""
    if y.dtype == object and len(y):
        converted = pd.to_numeric(y, errors="coerce")
        if bool(converted.notna().sum() == y.notna().sum()) and not any(isinstance(v, bool) for v in y):
            return converted
    return y


def _integer_labels(y: pd.Series) -> pd.Series:
    """Class labels 0.0/1.0 (floats only because of missing cells) become the 0/1 the file wrote."""
    if ptypes.is_float_dtype(y.dtype) or (ptypes.is_integer_dtype(y.dtype) and y.dtype != np.int64):
        arr = y.to_numpy(dtype=float)
        if len(arr) and _integer_valued(arr):
            return y.astype("int64")
    return y


def _with_target(frame: pd.DataFrame, target: str, y: pd.Series) -> pd.DataFrame:
    if frame[target].dtype == y.dtype:
        return frame
    out = frame.copy()
    out[target] = y
    return out


def _integer_valued(arr: np.ndarray) -> bool:
    finite = np.isfinite(arr)
    return bool(finite.all() and np.all(np.mod(arr, 1) == 0))


def _plain(value: Any) -> Any:
    """numpy scalars become Python ones, so labels print, compare and serialise as users wrote them."""
    return value.item() if isinstance(value, np.generic) else value


def _sorted_labels(labels: Iterable[Any]) -> list[Any]:
    items = list(labels)
    try:
        return sorted(items)
    except TypeError:  # mixed types (only possible for frames built in Python)
        return sorted(items, key=lambda v: (type(v).__name__, str(v)))


def _looks_numeric(name: str) -> bool:
    try:
        float(name)
    except ValueError:
        return False
    return True


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _listed(values: Iterable[Any], limit: int = 6) -> str:
    return listed_text([_short(v) for v in values], limit)


def listed_text(texts: Sequence[str], limit: int = 6) -> str:
    """The first `limit` texts joined by commas, then how many there are in all."""
    shown = ", ".join(texts[:limit])
    return shown + (f", … ({len(texts)} in all)" if len(texts) > limit else "")


def _rows(k: int) -> str:
    return f"{k} row" if k == 1 else f"{k} rows"


def _name(name: Any) -> str:
    return repr(name) if name is not None else "(unnamed)"


@dataclass(frozen=True, eq=False)
class LoadedTask:
    """A run's data as read once at its start: the validated task, the table as read, its hash.

    `table` is the CSV exactly as `read_table` returns it (every row, cells as written), which is
    what a run trains on; `prepared.frame` is the validated view of it. A run keeps both in
    memory so nothing downstream reads or hashes the file again.
    """

    prepared: PreparedTask
    table: pd.DataFrame
    sha256: str
    """Hex SHA-256 of the CSV's bytes, taken while it was parsed."""
    holdout_table: pd.DataFrame | None = None
    """The separate holdout file as read, if the request named one."""


def load_task(request: Mapping[str, Any]) -> LoadedTask:
    """Read, hash and validate the user's request in one pass over its files.

    Raises `InputError` with a one-line reason.
    """
    if not request.get("csv_path"):
        raise InputError("no CSV given: pass the path of the data file")
    if not request.get("target"):
        raise InputError("no target given: name the column to predict with --target")
    split = split_numbers(request)  # before the file is read: a bad number costs nothing
    table, sha256 = read_table_hashed(request["csv_path"], keep=[request["target"]])
    holdout_csv = request.get("holdout_csv")
    holdout_table = None
    if holdout_csv:
        holdout_table, holdout_sha256 = read_table_hashed(holdout_csv, keep=[request["target"]])
        if holdout_sha256 == sha256:
            raise InputError(
                f"the holdout file {holdout_csv} is the data file itself (the same bytes): the holdout score would "
                "be measured on rows the models trained on; give rows kept apart, or leave --holdout-csv out"
            )
    prepared = prepare_task(
        table,
        request["target"],
        metrics=request.get("metrics"),
        primary=request.get("primary_metric"),
        folds=split["folds"],
        holdout=split["holdout"],
        task_type=request.get("task_type"),
        holdout_frame=holdout_table,
    )
    return LoadedTask(prepared=prepared, table=table, sha256=sha256, holdout_table=holdout_table)
