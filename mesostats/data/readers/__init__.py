"""File readers: one file in, one :class:`~mesostats.data.parse.RawTable` out, problems logged.

- :mod:`.csv_dialect`: a CSV file's delimiter, decimal mark, thousands separator and encoding,
  declared or detected;
- :mod:`.csv_layout`: the bytes of a CSV file (encoding, record boundaries, line numbers);
- :mod:`.dates`: day-first or month-first numeric dates, detected per column or declared;
- :mod:`.csv_numbers`: numbers written with ``,`` decimals or thousands separators;
- :mod:`.csv`: CSV parsing with pyarrow (typed fast path, text fallback);
- :mod:`.spreadsheet`: Parquet and XLSX;
- :mod:`.columns`: unnamed columns, shared by all of them.
"""
