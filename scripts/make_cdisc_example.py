"""Write the example study as CDISC ADaM datasets: mesostats/datasets/cdisc_example/.

Usage::

    python scripts/make_cdisc_example.py                       # the bundled small version
    python scripts/make_cdisc_example.py --out DIR --subjects 0 --format json   # all, JSON
    python scripts/make_cdisc_example.py --out DIR --standard sdtm   # DM, SUPPDM, XH, EX, AE

Datasets (ADaMIG 1.3 names; see mesostats/data/cdisc_adam.py for how they are read):

- ``ADSL``: USUBJID, SITEID, ARM, SEX, AGE, DIAGNOS, STAGE;
- ``ADHAIR`` (BDS): one record per USUBJID × PARAMCD × AVISITN with AVAL (AVALC for
  REACTASS), ADY, ABLFL = Y at the baseline visit, ANL01FL = Y on analysis records; plus, as
  real deliveries have, LOCF records (DTYPE = LOCF) after a dropout and repeated measurements
  not used for analysis (ANL01FL blank), which load_cdisc must set aside;
- ``ADEX``: one record per injection: EXTRT (the cocktail), EXDOSE, EXDOSU = mL;
- ``ADAE``: AESEQ, AVISITN, AETERM, AEDECOD, AESEV, AESER, AEREL.

Written as SAS transport v5 (``.xpt``, pyreadstat) or Dataset-JSON 1.1 (``.json``), with
``cocktails.csv`` (recipes have no ADaM dataset). The bundled version holds the first 12
subjects (``--subjects 12``) to stay small; the tests also write the whole study.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from mesostats.data.cdisc_adam import ADAM_PARAMS
from mesostats.datasets import example_study

ROOT = Path(__file__).resolve().parents[1]
STUDYID = "MESO-EX"
PARAM_LABELS = {
    "HAIRDENS": "Hair density (hairs/cm2)",
    "HAIRCNT": "Hair count in target area",
    "TAREA": "Target area (cm2)",
    "SHAFTD": "Shaft diameter (um)",
    "TERMDENS": "Terminal hair density (hairs/cm2)",
    "VELDENS": "Vellus hair density (hairs/cm2)",
    "ANAGEN": "Anagen hairs (%)",
    "GPA": "Global photographic assessment",
    "PAINVAS": "Injection pain (VAS 0-10)",
    "REACTASS": "Side effects assessed",
}


def adam_datasets(n_subjects: int = 0) -> dict[str, pd.DataFrame]:
    """ADSL, ADHAIR, ADEX and ADAE of the example study (its first ``n_subjects``; 0: all)."""
    study = example_study()
    subjects = study.subjects.reset_index(drop=True)
    if n_subjects:
        subjects = subjects.iloc[:n_subjects]
    keep = set(subjects["subject_id"])
    sessions = study.sessions[study.sessions["subject_id"].isin(keep)].reset_index(drop=True)
    events = study.adverse_events[study.adverse_events["subject_id"].isin(keep)]
    adsl = pd.DataFrame(
        {
            "STUDYID": STUDYID,
            "USUBJID": subjects["subject_id"],
            "SITEID": subjects["site"],
            "ARM": subjects["arm"],
            "SEX": subjects["sex"],
            "AGE": subjects["age"].astype("float64"),
            "DIAGNOS": subjects["diagnosis"],
            "STAGE": subjects["stage"].fillna(""),
        }
    )
    return {
        "ADSL": adsl,
        "ADHAIR": _adhair(sessions),
        "ADEX": _adex(sessions),
        "ADAE": _adae(events.reset_index(drop=True)),
    }


def _adhair(sessions: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for code, column in ADAM_PARAMS.items():
        values = sessions[column]
        present = values.notna().to_numpy(dtype=bool)
        rows = sessions.loc[present]
        text = column == "reactions_assessed"
        parts.append(
            pd.DataFrame(
                {
                    "USUBJID": rows["subject_id"],
                    "PARAMCD": code,
                    "PARAM": PARAM_LABELS[code],
                    "AVAL": np.nan if text else values[present].astype("float64"),
                    "AVALC": np.where(values[present].astype(bool), "Y", "N") if text else "",
                    "AVISITN": rows["visit"].astype("float64"),
                    "ADY": rows["day"].astype("float64"),
                    "ABLFL": np.where(rows["baseline_flag"].fillna(False), "Y", ""),
                    "ANL01FL": "Y",
                    "DTYPE": "",
                }
            )
        )
    observed = pd.concat(parts, ignore_index=True)
    density = observed[observed["PARAMCD"] == "HAIRDENS"]
    # a repeated measurement at every 7th visit, not for analysis (ANL01FL blank)
    retest = density.iloc[::7].assign(AVAL=lambda d: d["AVAL"] + 1.0, ANL01FL="", ABLFL="")
    # LOCF after the last visit of people seen fewer times than the schedule
    last = density.sort_values("AVISITN").groupby("USUBJID", sort=False).tail(1)
    locf = last[last["AVISITN"] < sessions["visit"].max()].assign(
        AVISITN=lambda d: d["AVISITN"] + 1, ADY=np.nan, ABLFL="", ANL01FL="", DTYPE="LOCF"
    )
    adhair = pd.concat([observed, retest, locf], ignore_index=True)
    order = pd.factorize(adhair["USUBJID"])[0]
    adhair = adhair.assign(_o=order).sort_values(["_o", "PARAMCD", "AVISITN", "ANL01FL"])
    adhair = adhair.drop(columns="_o").reset_index(drop=True)
    adhair.insert(0, "STUDYID", STUDYID)
    return adhair


def _adex(sessions: pd.DataFrame) -> pd.DataFrame:
    given = sessions[sessions["cocktail_id"].notna()]
    return pd.DataFrame(
        {
            "STUDYID": STUDYID,
            "USUBJID": given["subject_id"],
            "AVISITN": given["visit"].astype("float64"),
            "ASTDY": given["day"].astype("float64"),
            "EXTRT": given["cocktail_id"],
            "EXDOSE": given["volume_ml"].astype("float64"),
            "EXDOSU": "mL",
            "EXROUTE": "INTRADERMAL",
        }
    ).reset_index(drop=True)


def _adae(events: pd.DataFrame) -> pd.DataFrame:
    seq = events.groupby("subject_id", sort=False).cumcount() + 1
    return pd.DataFrame(
        {
            "STUDYID": STUDYID,
            "USUBJID": events["subject_id"],
            "AESEQ": seq.astype("float64"),
            "AVISITN": events["visit"].astype("float64"),
            "AETERM": events["verbatim"].fillna(""),
            "AEDECOD": events["event"].str.upper().str.replace("_", " "),
            "AESEV": events["severity"].str.upper(),
            "AESER": np.where(events["serious"], "Y", "N"),
            "AEREL": np.where(events["related"], "RELATED", "NOT RELATED"),
        }
    )


def sdtm_datasets(n_subjects: int = 0) -> dict[str, pd.DataFrame]:
    """DM, SUPPDM, XH (a findings domain of hair assessments), EX and AE of the example study.

    Made from :func:`adam_datasets`: XH holds the observed analysis records (SDTM has no
    derived or repeated ones), plus a ``XHSTAT = NOT DONE`` record wherever a hair density was
    not measured at a visit; AE has no VISITNUM (the visit is the one on AESTDY).
    """
    adam = adam_datasets(n_subjects)
    adsl, adhair, adex, adae = adam["ADSL"], adam["ADHAIR"], adam["ADEX"], adam["ADAE"]
    dm = adsl[["STUDYID", "USUBJID", "SITEID", "ARM", "SEX", "AGE"]].assign(AGEU="YEARS")
    dm.insert(1, "DOMAIN", "DM")
    supp = adsl.melt(id_vars=["STUDYID", "USUBJID"], value_vars=["DIAGNOS", "STAGE"],
                     var_name="QNAM", value_name="QVAL")  # fmt: skip
    supp = supp[supp["QVAL"] != ""].assign(RDOMAIN="DM", QLABEL=lambda d: d["QNAM"].str.title())
    supp = supp.sort_values(["USUBJID", "QNAM"], kind="stable")
    observed = adhair[(adhair["ANL01FL"] == "Y") & (adhair["DTYPE"] == "")]
    visits = observed[observed["PARAMCD"] == "REACTASS"]
    density = observed[observed["PARAMCD"] == "HAIRDENS"]
    measured = set(zip(density["USUBJID"], density["AVISITN"], strict=True))
    keys = zip(visits["USUBJID"], visits["AVISITN"], strict=True)
    missing = visits[[k not in measured for k in keys]]
    not_done = missing.assign(PARAMCD="HAIRDENS", PARAM=PARAM_LABELS["HAIRDENS"], AVAL=np.nan,
                              AVALC="", ABLFL="", STAT="NOT DONE")  # fmt: skip
    xh = pd.concat([observed.assign(STAT=""), not_done], ignore_index=True)
    xh = xh.assign(_o=pd.factorize(xh["USUBJID"])[0]).sort_values(["_o", "AVISITN", "PARAMCD"])
    result = np.where(xh["AVALC"] != "", xh["AVALC"], xh["AVAL"].map(lambda v: f"{v:g}"))
    xh = pd.DataFrame(
        {
            "STUDYID": STUDYID, "DOMAIN": "XH", "USUBJID": xh["USUBJID"],
            "XHSEQ": (xh.groupby("USUBJID", sort=False).cumcount() + 1).astype("float64"),
            "XHTESTCD": xh["PARAMCD"], "XHTEST": xh["PARAM"],
            "XHSTRESC": np.where(xh["STAT"] == "", result, ""), "XHSTRESN": xh["AVAL"],
            "XHSTAT": xh["STAT"], "VISITNUM": xh["AVISITN"], "XHDY": xh["ADY"],
            "XHLOBXFL": xh["ABLFL"],
        }
    ).reset_index(drop=True)  # fmt: skip
    ex = adex.drop(columns="ASTDY").rename(columns={"AVISITN": "VISITNUM"})
    ex.insert(1, "DOMAIN", "EX")
    ex.insert(3, "EXSEQ", (ex.groupby("USUBJID", sort=False).cumcount() + 1).astype("float64"))
    day = observed.drop_duplicates(["USUBJID", "AVISITN"]).set_index(["USUBJID", "AVISITN"])
    ae = adae.assign(AESTDY=day["ADY"].reindex(pd.MultiIndex.from_frame(
        adae[["USUBJID", "AVISITN"]])).to_numpy()).drop(columns="AVISITN")  # fmt: skip
    ae.insert(1, "DOMAIN", "AE")
    return {"DM": dm, "SUPPDM": supp.reset_index(drop=True), "XH": xh, "EX": ex, "AE": ae}


def write_xpt(frame: pd.DataFrame, path: Path, name: str) -> None:
    import pyreadstat  # optional heavy dependency, as in mesostats.data.cdisc_files

    pyreadstat.write_xport(frame, str(path), table_name=name, file_format_version=5)


def dataset_json(frame: pd.DataFrame, name: str) -> dict:
    """Dataset-JSON 1.1 document of one dataset."""
    columns = []
    for column in frame.columns:
        numeric = pd.api.types.is_float_dtype(frame[column].dtype)
        columns.append(
            {
                "itemOID": f"IT.{name}.{column}",
                "name": column,
                "label": PARAM_LABELS.get(column, column),
                "dataType": "double" if numeric else "string",
            }
        )
    rows = [
        [None if isinstance(v, float) and np.isnan(v) else v for v in row]
        for row in frame.astype(object).itertuples(index=False, name=None)
    ]
    return {
        "datasetJSONVersion": "1.1.0",
        "fileOID": f"mesostats.example.{name}",
        "itemGroupOID": f"IG.{name}",
        "records": len(rows),
        "name": name,
        "label": name,
        "columns": columns,
        "rows": rows,
    }


def write_example(
    folder: Path, n_subjects: int = 12, fmt: str = "xpt", standard: str = "adam"
) -> list[Path]:
    """Write the datasets and cocktails.csv into ``folder``; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    made = adam_datasets(n_subjects) if standard == "adam" else sdtm_datasets(n_subjects)
    for name, frame in made.items():
        path = folder / f"{name.lower()}.{fmt}"
        if fmt == "xpt":
            write_xpt(frame, path, name)
        else:
            text = json.dumps(dataset_json(frame, name), ensure_ascii=False)
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    cocktails = example_study().cocktails.reset_index(drop=True)
    paths.append(folder / "cocktails.csv")
    cocktails.to_csv(paths[-1], index=False, lineterminator="\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "mesostats" / "datasets" / "cdisc_example"
    )
    parser.add_argument("--subjects", type=int, default=12, help="first N subjects (0: all)")
    parser.add_argument("--format", choices=["xpt", "json"], default="xpt")
    parser.add_argument("--standard", choices=["adam", "sdtm"], default="adam")
    args = parser.parse_args(argv)
    for path in write_example(args.out, args.subjects, args.format, args.standard):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
