"""The sections of the report, one module each: each turns the study and its fits into the
plain values (strings, tables, figures, failures) that its template shows."""
