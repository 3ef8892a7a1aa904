#!/usr/bin/env bash
# A/B timing of sm90 variants selected by environment (e.g. LGH_SM90_VARIANT=1 vs 401)
# next to cublaslt, interleaved in rounds on one warm GPU, then the correctness matrix of
# each variant. Prints one line per (variant, shape, mode): median of the rounds' medians.
#   bench/sm90_ab.sh "" "LGH_SM90_VARIANT=401"   (the model's choice against W multicast)
# ENGINE=sm80 times that engine instead. A variant may name another build's CLI, e.g. a baseline commit built into build-base/
# and carried along: "LGH_BIN=build-base/lgh" (its library is found next to it).
# BACKWARD=1 times training steps instead (lgh run --backward: the forward with saves plus
# the backward of all five inputs) and keeps each variant's gradient errors in the raw log.
set -u
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=("")
rounds=${ROUNDS:-3}
shapes=${SHAPES:-"1024 4096"}
modes=${MODES:-"float32:tf32 bfloat16:default float32:3xtf32"}
lgh=build/lgh
bwd=${BACKWARD:+--backward}
pick=$([ -n "$bwd" ] && echo '/^  step:/ {print $3}' || echo '/median/ {print $3}')
log=${OUT:-/tmp}/ab.log
: > "$log"
for r in $(seq "$rounds"); do
    for m in $shapes; do for md in $modes; do
        dt=${md%%:*} math=${md##*:}
        t=$($lgh run --engine cublaslt --m "$m" --groups "${NGROUPS:-16}" --dtype "$dt" --math "$math" --iters ${ITERS:-100} --check-rows 0 $bwd 2>&1 |
            awk "$pick")
        echo "cublaslt m=$m $dt/$math $t" >> "$log"
        for v in "${variants[@]}"; do
            bin=$lgh
            for w in $v; do case $w in LGH_BIN=*) bin=${w#LGH_BIN=} ;; esac; done
            echo "== ${ENGINE:-sm90}[${v// /,}] m=$m $dt/$math round $r" >> "$log.raw"
            t=$(env $v LD_LIBRARY_PATH="$(dirname "$bin")" $bin run --engine "${ENGINE:-sm90}" --m "$m" --groups "${NGROUPS:-16}" --dtype "$dt" --math "$math" --iters ${ITERS:-100} \
                --check-rows $([ "$r" = 1 ] && echo 64 || echo 0) $bwd 2>&1 | tee -a "$log.raw" | awk "$pick")
            echo "${ENGINE:-sm90}[${v// /,}] m=$m $dt/$math $t" >> "$log"
        done
    done; done
done
echo "== median over $rounds rounds (ms); ratio to cublaslt"
awk '{k=$1" "$2" "$3; v[k]=v[k]" "$4} END {for (k in v) print k, v[k]}' "$log" | sort -k2,3 |
    while read -r impl m mode vals; do
        med=$(echo $vals | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
        echo "$m $mode $impl $med"
    done | awk '{ if ($3=="cublaslt") base[$1" "$2]=$4; line[NR]=$0; key[NR]=$1" "$2; t[NR]=$4 }
        END { for (i=1;i<=NR;i++) printf "%-60s %s\n", line[i], (base[key[i]]>0 ? sprintf("%.3f", t[i]/base[key[i]]) : "") }'
grep -E "error|FAIL|bound" "$log.raw" | sort | uniq -c | head -20
