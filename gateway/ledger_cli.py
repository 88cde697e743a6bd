"""`ipx ledger verify DIR`: check a journal on disk, and replay its commands to check its postings.

    ipx ledger verify DIR [--json] [--allow-torn-tail] [--replay | --no-replay]

It walks every segment (ledger.file_store.read_journal: frame CRCs, decoding, seq continuity,
hash chain), then re-checks each record and rebuilds every balance from the postings
(ledger.verify: chain, non-negative balances, value crossing the boundary only through the
record kinds allowed to move it, conservation). With --replay (the default) each record that
passed those checks is then handed to a fresh exchange core (JournalReplayer,
Exchange.replay_record), which handles its command and must write the same record: the same
kind, the same command bytes and the same postings. It prints a summary: records, last seq,
head hash, state hash, the replayed exchange's state hash and per-asset totals, issued units
and net deposits; or the first failure, naming its seq.

Why replay is the default: the structural checks read only the postings and trust each
record's kind, so whoever can rewrite the journal and recompute its hashes can post a deposit
to another account, or relabel a record to move value across the boundary, and still pass
them; the engine itself would refuse that journal on recovery. A verifier that says OK should
mean the engine accepts the journal. Replay costs about as much again as the structural
checks (a full pass of the exchange core). --no-replay keeps the engine-free check of
ledger.verify alone: for a quick check of a copy, or a journal written by another version of
the rules (whose commands need not replay to the same postings under this one).

A torn tail (the last frame cut short by a crash before it was acknowledged) is reported and
is a failure unless --allow-torn-tail: recovery would drop it, but a verifier of a copy should
say that the copy is not clean.

Exit codes, as for the other `ipx ledger` commands: 0 everything holds; 1 the journal does not
verify (damaged, torn, or a rule broken); 2 there is no journal to verify or it cannot be read.
Verdicts go to stdout, problems that stop the check from running to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from exchange.core import Exchange, ReplayMismatch
from ledger.errors import JournalCorrupt, JournalError, LedgerError, VerificationFailed
from ledger.file_store import read_journal
from ledger.records import GENESIS_HASH, Record
from ledger.verify import JournalVerifier, VerifyReport

EXIT_OK = 0
EXIT_NOT_VERIFIED = 1
EXIT_UNUSABLE_INPUT = 2
TORN_TAIL_PREFIX = "torn tail"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `verify` to the `ipx ledger` group."""
    verify = subparsers.add_parser(
        "verify",
        help="check a journal: CRCs, chain, seqs, balances, conservation, replay",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    verify.add_argument("directory", metavar="DIR", help="journal directory (holds journal/)")
    verify.add_argument("--json", action="store_true", help="print a machine-readable summary")
    verify.add_argument(
        "--allow-torn-tail",
        action="store_true",
        help="accept a torn last frame (report it, verify everything before it)",
    )
    verify.add_argument(
        "--replay",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="replay every command through the exchange core and check that it writes the "
        "record's kind, command bytes and postings (default: on, because the other checks "
        "trust the postings and kinds as written, so a rewritten journal with recomputed "
        "hashes can pass them; it costs a full replay). --no-replay checks the chain, "
        "balances and conservation alone, without the engine",
    )
    verify.set_defaults(handler=run_verify)


class JournalReplayer:
    """Replay records through a fresh exchange one at a time, as JournalVerifier checks them.

    Feed it the records JournalVerifier accepted, in order: it counts the records that
    replayed, so a caller can report what held up to the first mismatch.
    """

    def __init__(self) -> None:
        self.exchange = Exchange()
        self.records = 0
        self.last_seq = 0
        self.head_hash = GENESIS_HASH

    def add(self, record: Record) -> None:
        """Replay one record; the replayer must not be fed further after it raises.

        Raises:
            ReplayMismatch: the record is not what handling its command writes, or handling
                it crashed the engine (a verifier reports that as a failure at the seq rather
                than a traceback).
        """
        try:
            self.exchange.replay_record(record)
        except ReplayMismatch:
            raise
        except (AssertionError, LedgerError) as error:
            raise ReplayMismatch(
                record.seq,
                f"handling its command broke an invariant of the engine "
                f"({error.__class__.__name__}: {error})",
            ) from error
        self.records += 1
        self.last_seq = record.seq
        self.head_hash = record.hash


def run_verify(arguments: argparse.Namespace) -> int:
    """Verify the journal under arguments.directory; print the verdict; return the exit code."""
    directory: str = arguments.directory
    verifier = JournalVerifier()
    replayer = JournalReplayer() if arguments.replay else None
    torn: JournalCorrupt | None = None
    failure: dict[str, Any] | None = None
    report: VerifyReport | None = None
    try:
        # One pass: each record is replayed right after the structural checks accept it, so
        # the first failure of either kind is the lowest seq, and the journal is read once.
        for record in read_journal(directory):
            verifier.add(record)
            if replayer is not None:
                replayer.add(record)
    except JournalCorrupt as error:
        if error.reason.startswith(TORN_TAIL_PREFIX):
            torn = error
        else:
            failure = _corrupt(error)
    except VerificationFailed as error:
        failure = _rule_broken(error)
    except ReplayMismatch as error:
        failure = {
            "kind": "replay_mismatch",
            "seq": error.seq,
            "reason": f"does not replay: {error.reason}",
        }
    except (JournalError, OSError) as error:
        print(f"ipx ledger verify: cannot read a journal at {directory}: {error}", file=sys.stderr)
        return EXIT_UNUSABLE_INPUT
    if failure is None and torn is not None and not arguments.allow_torn_tail:
        failure = _corrupt(torn)
        failure["kind"] = "torn_tail"
    if failure is None:
        try:
            report = verifier.report()
        except VerificationFailed as error:
            failure = _rule_broken(error)
    summary = _summary(directory, verifier, replayer, report, torn, failure)
    print(json.dumps(summary, indent=2) if arguments.json else _human(summary))
    return EXIT_OK if summary["ok"] else EXIT_NOT_VERIFIED


def _corrupt(error: JournalCorrupt) -> dict[str, Any]:
    return {
        "kind": "journal_corrupt",
        "seq": error.seq,
        "reason": error.reason,
        "path": error.path,
        "offset": error.offset,
    }


def _rule_broken(error: VerificationFailed) -> dict[str, Any]:
    return {"kind": "verification_failed", "seq": error.seq, "reason": error.reason}


def _summary(
    directory: str,
    verifier: JournalVerifier,
    replayer: JournalReplayer | None,
    report: VerifyReport | None,
    torn: JournalCorrupt | None,
    failure: dict[str, Any] | None,
) -> dict[str, Any]:
    # The JSON form; the human form is printed from it, so the two never disagree. Counts and
    # the head describe what verified (everything before a failure); assets only a full pass.
    # The replayer takes only records the verifier took, so when replaying it holds the counts
    # of what passed every check.
    passed: JournalVerifier | JournalReplayer = verifier if replayer is None else replayer
    assets: dict[str, dict[str, int | None]] | None = None
    if report is not None and failure is None:
        names = sorted({*report.totals, *report.issued_units, *report.net_deposits})
        assets = {
            asset: {
                "total": report.totals.get(asset, 0),
                "issued_units": report.issued_units.get(asset),
                "net_deposits": report.net_deposits.get(asset),
            }
            for asset in names
        }
    return {
        "ok": failure is None,
        "directory": os.path.abspath(directory),
        "records": passed.records,
        "last_seq": passed.last_seq,
        "head_hash": passed.head_hash.hex(),
        "state_hash": report.state_hash.hex() if report is not None and failure is None else None,
        "replayed": replayer is not None,
        "exchange_state_hash": (
            replayer.exchange.state_hash().hex()
            if replayer is not None and failure is None
            else None
        ),
        "assets": assets,
        "torn_tail": None if torn is None else _corrupt(torn),
        "failure": failure,
    }


def _human(summary: dict[str, Any]) -> str:
    lines = [f"journal {summary['directory']}: {'OK' if summary['ok'] else 'FAILED'}"]
    failure = summary["failure"]
    if failure is not None:
        where = f" ({failure['path']} offset {failure['offset']})" if "path" in failure else ""
        lines.append(f"  first failure at seq {failure['seq']}{where}: {failure['reason']}")
        if failure["kind"] == "torn_tail":
            lines.append("  (a crash cut the last frame short; --allow-torn-tail accepts that)")
        lines.append("  verified before it:")
    lines += [
        f"  records     {summary['records']}",
        f"  last seq    {summary['last_seq']}",
        f"  head hash   {summary['head_hash']}",
    ]
    if summary["state_hash"] is not None:
        lines.append(f"  state hash  {summary['state_hash']}")
    if summary["exchange_state_hash"] is not None:
        lines.append(
            f"  replayed    every command: exchange state hash {summary['exchange_state_hash']}"
        )
    elif not summary["replayed"]:
        lines.append("  replayed    no (--no-replay): postings not checked against the commands")
    torn = summary["torn_tail"]
    if torn is not None and failure is None:
        lines.append(
            f"  torn tail   ignored at seq {torn['seq']} ({torn['path']} offset "
            f"{torn['offset']}): {torn['reason']}"
        )
    if summary["assets"]:
        lines.append(_asset_table(summary["assets"]))
    return "\n".join(lines)


def _asset_table(assets: dict[str, dict[str, int | None]]) -> str:
    rows = [("asset", "total", "issued units", "net deposits")]
    for asset, figures in assets.items():
        rows.append(
            (
                asset,
                str(figures["total"]),
                "-" if figures["issued_units"] is None else str(figures["issued_units"]),
                "-" if figures["net_deposits"] is None else str(figures["net_deposits"]),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return "\n".join(
        "  "
        + row[0].ljust(widths[0])
        + "".join("  " + cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        for row in rows
    )
