#!/usr/bin/env bash
# Runs Apache Kafka for the tests from the jars Maven fetches for kafka/pom.xml (kept in ~/.m2):
#
#   scripts/kafka.sh classpath
#       prints the Java classpath of the broker and the command-line tools. Maven resolves it once;
#       it is cached in target/kafka/ under a hash of kafka/pom.xml and reused (without Maven,
#       so offline) while every jar it names exists.
#
#   scripts/kafka.sh run [--brokers N] -- CMD [ARGS...]
#       starts N (default 1) KRaft nodes, each both broker and controller, on free ports of
#       127.0.0.1 with their data and logs in one temporary directory, waits until every broker
#       reports all N brokers in its metadata, exports
#         FACTLOG_TEST_KAFKA_BROKERS    bootstrap list, host:port of every broker, comma-separated
#         FACTLOG_TEST_KAFKA_PIDS       the brokers' pids in the same order, space-separated
#         FACTLOG_TEST_KAFKA_CLASSPATH  the classpath printed by `classpath`
#       runs CMD, stops the brokers by the pids it started (SIGTERM, then SIGKILL), removes the
#       directory and exits with CMD's status. If FACTLOG_TEST_KAFKA_BROKERS is already set,
#       nothing is started and CMD runs as it is.
#       The internal topics (consumer offsets, transaction state) have replication factor 1 with
#       one broker; with more, replication factor 3 (at most N) and, for the transaction state,
#       min.insync.replicas 2. Topics are never created automatically. A broker killed by a test
#       is fenced, and its partitions get other leaders, 3 s later.
#
#   scripts/kafka.sh class MAINCLASS [ARGS...]
#       runs a Java class of that classpath, e.g. org.apache.kafka.tools.ProducerPerformance,
#       org.apache.kafka.tools.consumer.ConsoleConsumer or org.apache.kafka.tools.TopicCommand,
#       with warnings and errors logged to stderr.
#
# Needs java (17 or later), mvn and python3 (scripts/setup.sh installs them).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pom=$root/kafka/pom.xml
cache_dir=$root/target/kafka

usage() {
    cat >&2 <<EOF
usage: $0 classpath
       $0 run [--brokers N] -- CMD [ARGS...]
       $0 class MAINCLASS [ARGS...]
EOF
    exit 2
}

# Prints a message and the given log files to stderr, and exits 1 (the trap, if any, cleans up).
fail() {
    echo "kafka.sh: $1" >&2
    shift
    for log in "$@"; do [ ! -f "$log" ] || { echo "--- $log" >&2; cat "$log" >&2; }; done
    exit 1
}

# Succeeds if every jar named in the classpath file exists.
jars_exist() {
    local jars=() jar
    IFS=: read -r -a jars <"$1" || true
    ((${#jars[@]})) || return 1
    for jar in "${jars[@]}"; do [ -f "$jar" ] || return 1; done
}

classpath() {
    local key file
    key=$(sha256sum "$pom" | cut -c 1-16)
    file=$cache_dir/classpath-$key.txt
    if ! { [ -s "$file" ] && jars_exist "$file"; }; then
        command -v mvn >/dev/null || fail "no mvn (run scripts/setup.sh)"
        echo "kafka.sh: resolving the jars of kafka/pom.xml with Maven" >&2
        mkdir -p "$cache_dir"
        local out=$file.$$ log=$file.$$.log
        # Offline first: it needs no network when ~/.m2 already has everything.
        if ! mvn -B -q -o -f "$pom" dependency:build-classpath -Dmdep.outputFile="$out" >"$log" 2>&1 \
            && ! mvn -B -q -f "$pom" dependency:build-classpath -Dmdep.outputFile="$out" >"$log" 2>&1; then
            rm -f "$out"
            fail "Maven could not resolve the Kafka jars of $pom" "$log"
        fi
        jars_exist "$out" || { rm -f "$out"; fail "Maven wrote no usable classpath" "$log"; }
        mv "$out" "$file"
        rm -f "$log"
    fi
    cat "$file"
    echo
}

# Writes a Log4j 2 configuration logging at LEVEL to stderr, or to the file FILE if given.
write_log4j_config() {
    local dest=$1 level=$2 file=${3:-}
    {
        echo "status = warn"
        if [ -n "$file" ]; then
            echo "appender.out.type = File"
            echo "appender.out.fileName = $file"
        else
            echo "appender.out.type = Console"
            echo "appender.out.target = SYSTEM_ERR"
        fi
        echo "appender.out.name = out"
        echo "appender.out.layout.type = PatternLayout"
        echo "appender.out.layout.pattern = [%d] %p %m (%c)%n"
        echo "rootLogger.level = $level"
        echo "rootLogger.appenderRef.out.ref = out"
    } >"$dest.$$"
    mv "$dest.$$" "$dest"
}

# Prints the path of the class data sharing archive for this classpath and this Java. The JVMs
# map the classes it holds instead of loading them from the jars, which saves about a second of
# each broker's startup. `run` makes it when it is missing: the first broker dumps the classes it
# loaded when it exits (-XX:ArchiveClassesAtExit). Java ignores an archive that does not match.
cds_archive() {
    local java key
    java=$(readlink -f "$(command -v java)")
    key=$(printf '%s\n' "$1" "$java" "$(stat -c %Y "$java")" | sha256sum | cut -c 1-16)
    echo "$cache_dir/classes-$key.jsa"
}

# Prints the JVM options that use the class data sharing archive, if there is one.
cds_options() {
    local archive
    archive=$(cds_archive "$1")
    [ ! -f "$archive" ] || echo "-XX:SharedArchiveFile=$archive"
}

run_class() {
    (($# >= 1)) || usage
    local cp config=$cache_dir/log4j2-tools.properties
    cp=$(classpath)
    write_log4j_config "$config" warn
    # shellcheck disable=SC2046
    exec java -Xmx512m $(cds_options "$cp") -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$config" -cp "$cp" "$@"
}

# Prints COUNT distinct free ports of 127.0.0.1, one per line.
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
for s in socks: print(s.getsockname()[1])' "$1"
}

# Succeeds if the process is a child of this shell and has not exited. (Checking the parent
# keeps a pid that the system has given to another process since from being taken for ours.)
alive() {
    local stat state ppid
    { stat=$(<"/proc/$1/stat"); } 2>/dev/null || return 1
    read -r state ppid _ <<<"${stat##*) }"
    [ "$state" != Z ] && [ "$ppid" = $$ ]
}

# Polls a command until it succeeds, for at most 60 s, and gives up at once if one of the
# processes (space-separated pids, first argument) is gone.
wait_until() {
    local pids=$1 deadline=$((SECONDS + 60)) pid
    shift
    until "$@" >/dev/null 2>&1; do
        for pid in $pids; do alive "$pid" || return 1; done
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# Succeeds if each broker on 127.0.0.1:PORT... answers a Metadata request (version 0) listing as
# many brokers as there are ports, that is, once all of them are registered with the controller,
# unfenced, and known to each broker.
brokers_listed() {
    python3 -c '
import socket, struct, sys
ports = [int(port) for port in sys.argv[1:]]
client = b"kafka.sh"
request = struct.pack(">hhih", 3, 0, 1, len(client)) + client + struct.pack(">i", 0)
for port in ports:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(struct.pack(">i", len(request)) + request)
        response = b""
        while len(response) < 12:
            chunk = s.recv(12 - len(response))
            if not chunk: sys.exit(1)
            response += chunk
    _size, correlation, brokers = struct.unpack(">iii", response)
    if correlation != 1 or brokers != len(ports): sys.exit(1)' "$@"
}

# A random cluster id as Kafka's Uuid.randomUuid() makes them: 16 random bytes in unpadded
# URL-safe base64, never starting with "-".
random_cluster_id() {
    python3 -c '
import base64, os
while True:
    id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    if not id.startswith("-"): print(id); break'
}

tmp="" broker_pids=() format_pids=() cds_dump="" cds_target=""

# Stops what run started and removes the temporary directory. The brokers get SIGTERM together,
# and SIGKILL after 10 s, or as soon as a majority of them has exited: the others then have no
# controller quorum left and only wait for timeouts (5 s for the Raft client, up to 5 min for a
# broker's controlled shutdown). The first broker writing the class data sharing archive is given
# 30 s, and the archive is kept if it finished.
cleanup() {
    set +e
    exec 2>/dev/null # (bash would report each process that died of a signal)
    local pid deadline=$((SECONDS + 10)) left exited n=${#broker_pids[@]}
    [ -z "$cds_dump" ] || deadline=$((SECONDS + 30))
    for pid in "${broker_pids[@]}" "${format_pids[@]}"; do alive "$pid" && kill -TERM "$pid"; done
    while ((SECONDS < deadline)); do
        left=0 exited=0
        for pid in "${broker_pids[@]}"; do if alive "$pid"; then left=1; else exited=$((exited + 1)); fi; done
        for pid in "${format_pids[@]}"; do alive "$pid" && left=1; done
        ((left)) || break
        if ((n > 1 && exited > n / 2)) && { [ -z "$cds_dump" ] || ! alive "${broker_pids[0]}"; }; then break; fi
        sleep 0.1
    done
    if [ -n "$cds_dump" ] && ! alive "${broker_pids[0]}" && [ -s "$cds_dump" ]; then
        cp "$cds_dump" "$cds_target.$$" && mv "$cds_target.$$" "$cds_target"
        rm -f "$cds_target.$$"
    fi
    for pid in "${broker_pids[@]}" "${format_pids[@]}"; do alive "$pid" && kill -KILL "$pid"; done
    deadline=$((SECONDS + 5))
    for pid in "${broker_pids[@]}" "${format_pids[@]}"; do
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
        wait "$pid"
    done
    [ -z "$tmp" ] || rm -rf "$tmp"
}

run() {
    local n=1
    if [ "${1:-}" = --brokers ]; then
        [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || usage
        n=$2
        shift 2
    fi
    [ "${1:-}" = -- ] && (($# >= 2)) || usage
    shift

    if [ -n "${FACTLOG_TEST_KAFKA_BROKERS:-}" ]; then
        exec "$@"
    fi

    command -v java >/dev/null || fail "no java (run scripts/setup.sh)"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    local cp version cluster_id ports=() voters="" brokers="" i dir rf=1 min_isr=1 cds=() opts
    cp=$(classpath)
    version=$(tr ':' '\n' <<<"$cp" | sed -n 's|.*/kafka_2\.13-\(.*\)\.jar$|\1|p')
    tmp=$(mktemp -d -t factlog-kafka.XXXXXX)
    cluster_id=$(random_cluster_id)
    write_log4j_config "$tmp/log4j2.properties" info '${sys:kafka.logs.dir}/server.log'
    write_log4j_config "$tmp/log4j2-tools.properties" warn
    cds_target=$(cds_archive "$cp")
    if [ -f "$cds_target" ]; then cds=(-XX:SharedArchiveFile="$cds_target"); fi
    if ((n > 1)); then
        rf=$((n < 3 ? n : 3))
        min_isr=$((rf < 2 ? rf : 2))
    fi

    # Node i (1..n) has its broker on ports[2i-2] and its controller on ports[2i-1].
    mapfile -t ports < <(free_ports $((2 * n)))
    for ((i = 1; i <= n; i++)); do
        voters+="${voters:+,}$i@127.0.0.1:${ports[2 * i - 1]}"
        brokers+="${brokers:+,}127.0.0.1:${ports[2 * i - 2]}"
    done

    for ((i = 1; i <= n; i++)); do
        dir=$tmp/broker-$i
        mkdir "$dir"
        cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:${ports[2 * i - 2]},CONTROLLER://127.0.0.1:${ports[2 * i - 1]}
advertised.listeners=PLAINTEXT://127.0.0.1:${ports[2 * i - 2]}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
# Factlog nodes in tests use session timeouts of a few seconds (the default minimum is 6 s).
group.min.session.timeout.ms=1000
# Internal topics with 10 partitions instead of 50 are created faster on first use.
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
# A broker stopped without warning (SIGKILL) is fenced and loses its leaderships after 3 s.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
${FACTLOG_KAFKA_BROKER_CONFIG:-}
EOF
        # A short run: the client compiler alone and the serial collector make it start faster.
        java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "${cds[@]}" -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$tmp/log4j2-tools.properties" -cp "$cp" \
            kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" >"$dir/format.log" 2>&1 &
        format_pids+=($!)
    done
    local failed=0
    for ((i = 1; i <= n; i++)); do wait "${format_pids[i - 1]}" || failed=$i; done
    format_pids=()
    ((failed == 0)) || fail "formatting the storage of broker $failed failed" "$tmp/broker-$failed/format.log"

    for ((i = 1; i <= n; i++)); do
        dir=$tmp/broker-$i
        opts=("${cds[@]}")
        if ((i == 1 && ${#cds[@]} == 0)); then
            cds_dump=$tmp/classes.jsa
            opts=(-XX:ArchiveClassesAtExit="$cds_dump" -Xlog:cds=error,cds+dynamic=error)
        fi
        # The client compiler alone: on a machine with few cores the optimizing compiler's work
        # slows the start of several brokers down more than its code speeds up a test's load.
        java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:TieredStopAtLevel=1 "${opts[@]}" \
            -Djava.awt.headless=true -Dlog4j2.configurationFile="$tmp/log4j2.properties" \
            -Dkafka.logs.dir="$dir" -cp "$cp" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
        broker_pids+=($!)
    done
    local logs=()
    for ((i = 1; i <= n; i++)); do logs+=("$tmp/broker-$i/stdout.log" "$tmp/broker-$i/server.log"); done
    # shellcheck disable=SC2046
    wait_until "${broker_pids[*]}" brokers_listed $(for ((i = 1; i <= n; i++)); do echo "${ports[2 * i - 2]}"; done) \
        || fail "the brokers did not all start (on ${brokers//,/, })" "${logs[@]}"
    for ((i = 1; i <= n; i++)); do
        echo "kafka.sh: Kafka $version broker $i on 127.0.0.1:${ports[2 * i - 2]} (controller 127.0.0.1:${ports[2 * i - 1]}), pid ${broker_pids[i - 1]}, data $tmp/broker-$i" >&2
    done

    export FACTLOG_TEST_KAFKA_BROKERS=$brokers
    export FACTLOG_TEST_KAFKA_PIDS="${broker_pids[*]}"
    export FACTLOG_TEST_KAFKA_CLASSPATH=$cp

    # CMD keeps the standard error; bash's own reports of processes killed by a signal (a test
    # may kill a broker) go nowhere.
    local status=0
    { "$@" 2>&3 3>&- || status=$?; } 3>&2 2>/dev/null
    exit "$status"
}

case "${1:-}" in
    classpath) (($# == 1)) || usage; classpath ;;
    run) shift; run "$@" ;;
    class) shift; run_class "$@" ;;
    *) usage ;;
esac
