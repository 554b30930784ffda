"""Study data: read, validate, and hold the tables of a mesotherapy study.

One job per module, in the order data flows through them:

- :mod:`.schema`: the Table Schema files (``data_schema/``) and the domain facts they carry
  (outcome fields, units, responder thresholds);
- :mod:`.sources`: a folder, ``datapackage.json`` or dict of DataFrames → raw tables;
- :mod:`.readers`: CSV in any common dialect (:mod:`.readers.csv_dialect`,
  :mod:`.readers.csv_layout`, :mod:`.readers.csv_numbers`, :mod:`.readers.csv`), Parquet and
  XLSX (:mod:`.readers.spreadsheet`) files → raw tables; :mod:`.readers.dates` the order of
  numeric dates (day-first or month-first) in a date column;
- :mod:`.cdisc`: CDISC column names and coded values → friendly names;
- :mod:`.redcap`: ``load_redcap``: a REDCap export → the same raw tables, validated the same
  way (:mod:`.redcap_dictionary` the data dictionary, :mod:`.redcap_export` records, events and
  instruments, :mod:`.redcap_mapping` which field is which column, :mod:`.redcap_tables`
  decoding and problems in REDCap terms);
- :mod:`.cdisc_study`: ``load_cdisc``: CDISC ADaM or SDTM datasets (:mod:`.cdisc_files` reads
  SAS transport and Dataset-JSON, :mod:`.cdisc_sdtm` renames SDTM into the ADaM layout,
  :mod:`.cdisc_adam` maps ADSL/BDS/ADEX/ADAE and their flags, :mod:`.cdisc_terms` names
  variables in the delivery's own standard);
- :mod:`.recipes`: the cocktails table passed beside a REDCap or CDISC export;
- :mod:`.parse`: raw columns → schema types, with missing and invalid cells flagged;
- :mod:`.keys`: key columns → integer codes (for every key comparison);
- :mod:`.checks`: one table's columns, types, field constraints and primary key;
- :mod:`.study_day`: study days derived from visit dates (CDISC rule) when ``day`` is absent;
- :mod:`.rules`: the cross-row rules of ``x-mesostats-rules``;
- :mod:`.crosstable`: foreign keys and column clashes between tables;
- :mod:`.problems`: the one problem log every step writes to;
- :mod:`.validate`: runs the checks → typed tables, or one ``ValidationError``;
- :mod:`.readers.sql`: database tables (SQLAlchemy) → raw tables, labelled by primary key;
- :mod:`.load`: ``load_study``: sources → validate → :class:`~.study.Study`;
- :mod:`.save`: ``save_study``: a Study → a folder (CSV, Parquet) or a database;
- :mod:`.study`: the ``Study`` and its analysis tables;
- :mod:`.derive`: baseline, change from baseline, ingredient exposure.
"""
