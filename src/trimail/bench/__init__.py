"""``trimail bench``: an SMTP load generator that measures throughput and latency per phase.

Modules, one job each:

- ``options``: the frozen ``BenchOptions`` and every check on them (one-line errors naming the
  flag, addresses refused before they can reach the wire).
- ``message``: the bytes each session sends, built once per run.
- ``replies``: the reply reader on the hot path (CRLF scan, 4th byte, no regex).
- ``client``: one session's loop over any Trio stream (connect, EHLO, STARTTLS, transactions).
- ``stats``: log-bucket latency histograms, error counts, exact merging.
- ``runner``: N sessions under a closed or open loop, with the time cap and progress line.
- ``local_server``: a throwaway ``trimail serve`` subprocess when no ``--target`` is given.
- ``workers``: K client processes whose results are merged exactly.
- ``report``: the human table and the JSON object.
- ``cli``: argparse wiring (``add_bench_parser``, ``bench_command``).
"""
