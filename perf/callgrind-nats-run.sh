#!/usr/bin/env bash
# Router instructions per delivered message under callgrind, one run: the
# router (`--shards 1 --cores 0`) under valgrind, a 2,000-message warm-up,
# counters zeroed (`callgrind_control -z`), the measured `weft bench` run
# (64 B, 1 publisher, SUBS subscribers, N messages), counters dumped
# (`-d`): the total over N * SUBS. (perf/callgrind.sh takes the
# difference of two runs instead; on a busy machine its load tool can give
# up on its final PONG while the router lags under valgrind, which this
# avoids.) Kills only the valgrind it started.
#
# Usage: perf/callgrind-nats-run.sh BIN OUTDIR PROTO SUBS N PORT
#   PROTO nats|mqtt (MQTT at QoS 0); env LOAD=the load tool's weft (default BIN)
set -u
BIN=$1 OUT=$2 PROTO=$3 SUBS=$4 N=$5 P=$6
mkdir -p $OUT
rm -f $OUT/cg.out*
valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file=$OUT/cg.out "$BIN" run --nats-listen 127.0.0.1:$P --mqtt-listen 127.0.0.1:$((P+1)) --admin-listen 127.0.0.1:$((P+2)) --shards 1 --cores 0 --log-level warn > $OUT/router.log 2>&1 &
V=$!
PP=$P; [ "$PROTO" = mqtt ] && PP=$((P+1))
for _ in $(seq 3000); do (exec 3<>/dev/tcp/127.0.0.1/$PP) 2>/dev/null && break; sleep 0.1; done
LOAD=${LOAD:-$BIN}
EXTRA=""; [ "$PROTO" = mqtt ] && EXTRA="--qos 0"
$LOAD bench --protocol $PROTO --server 127.0.0.1:$PP --size 64 --pin-cores 1 --no-progress --quiet-ms 20000 --pubs 1 --subs $SUBS --msgs 2000 $EXTRA > $OUT/warm.log 2>&1
callgrind_control -z $V >/dev/null
$LOAD bench --protocol $PROTO --server 127.0.0.1:$PP --size 64 --pin-cores 1 --no-progress --quiet-ms 20000 --pubs 1 --subs $SUBS --msgs $N $EXTRA > $OUT/load.log 2>&1
callgrind_control -d $V >/dev/null
sleep 2
kill -9 $V
T=$(callgrind_annotate $OUT/cg.out.1 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$OUT total $T per delivered $(( T / (N * SUBS) ))" | tee $OUT/summary
