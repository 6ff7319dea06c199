#!/usr/bin/env bash
# bench/live/plot.sh REPORT.md...: one PNG per report of bench/live/run.sh (REPORT without .md, + .png), from its
# per-second timelines (<REPORT>/<run>.timeline): commit -> client p50 and p99 of each second of each run, on a log
# scale, live against the polls.  gnuplot (Debian: gnuplot-nox).
set -euo pipefail
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot not found (Debian: gnuplot-nox)" >&2; exit 1; }
for md in "$@"; do
	dir=${md%.md}
	png=$dir.png
	title=$(head -n 1 "$md" | sed 's/^# //; s/"//g')
	plots=()
	for run in live poll-1000 poll-100; do
		f=$dir/$run.timeline
		[ -s "$f" ] || continue
		plots+=("'$f' using 1:(\$3 > 0 ? \$3 : 0.01) with linespoints title '$run p50'")
		plots+=("'$f' using 1:(\$4 > 0 ? \$4 : 0.01) with linespoints dashtype 2 title '$run p99'")
	done
	[ ${#plots[@]} -gt 0 ] || { echo "plot.sh: no timelines in $dir" >&2; continue; }
	gnuplot <<GP
set terminal pngcairo size 900,500 noenhanced
set output '$png'
set title "$title"
set xlabel 'second of the run (by commit time)'
set ylabel 'commit -> client (ms, log scale)'
set logscale y
set grid
set key outside right
plot $(IFS=,; echo "${plots[*]}")
GP
	echo "$png"
done
