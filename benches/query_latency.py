#!/usr/bin/env python3
"""Query latency, rtsd's OpenTSDB API against VictoriaMetrics' PromQL.

Loads the same generated data into both systems over their OpenTSDB telnet
listeners, waits until everything is stored (and, for rtsd, sealed into
blocks and hourly rollups) and the server has settled (under a tenth of a
core busy over a second: the timed queries get the machine to themselves),
then times three queries over HTTP on loopback, each over one kept-alive
connection:

  (a) one series over a day, raw points;
  (b) sum over 1,000 series of a 1-minute average, over a day;
  (c) hourly max of one series over 30 days (rtsd answers from rollups);

and, over a metric of 1,000,000 series (250,000 hosts x 4 cores, one point
each, two hours old so rtsd has sealed them), the lookups a dashboard makes
before it queries:

  (d) tag value suggestions for a prefix;
  (e) a query whose host filter is a wildcard, (f) the same as a regexp;
  (g) the series of one host (OpenTSDB's /api/search/lookup, PromQL's
      /api/v1/series).

  (z) a request with next to nothing to do (rtsd's /api/version,
      VictoriaMetrics' /health): what Python's client and one HTTP round
      trip cost on this machine, the floor under every figure above.

With --clickhouse, (a)-(c) also run against rtsd on ClickHouse
(`serve --store clickhouse`): the script starts its own clickhouse-server
(a minimal generated config in a temp dir, free loopback ports), loads the
data of (a)-(c) through that rtsd's telnet port (not the million series of
(d)-(g), which are not timed there: their hourly rollups alone keep the
shipper computing for some 20 minutes, and the server busy under the
timed queries), waits until every point is stored and its spool is empty
(`tsd.rtsd.spool.points` 0), then until the shipper has computed every
hour's rollups (`tsd.rtsd.spool.rollups.hours` unchanged over a whole
rollup interval) and both processes have settled, and prints the three
beside the embedded store's and VictoriaMetrics' figures. Then it empties
the rollup tables and times (c) again: (c') is (c) read from the points
alone, as before an hour is computed.

Usage: benches/query_latency.py [--clickhouse [--clickhouse-bin PATH]]
       RTSD_BINARY [VICTORIA_METRICS_BINARY]
(`cargo build --release` builds RTSD_BINARY; Debian's victoria-metrics
package installs /usr/bin/victoria-metrics, clickhouse-server
/usr/sbin/clickhouse-server). Bounded: about 5 minutes, 10 with
--clickhouse.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

RUNS, WARMUP = 50, 5
NOW = int(time.time()) // 60 * 60
DAY, MONTH = 86400, 30 * 86400
HC_HOSTS, HC_CORES = 250_000, 4
HC_TS = NOW - 2 * 3600
# hc1234, hc12340..hc12349 and hc123400..hc123499: 111 hosts, 444 series.
HC_PREFIX = "hc1234"


_next_port = 10_000 + os.getpid() * 7_919 % 20_000


def free_port():
    """A free loopback port below the ephemeral range, as in
    tests/common/ports.rs: a port from bind(0) may be taken by some outgoing
    connection before the server we hand it to binds it."""
    global _next_port
    while True:
        port, _next_port = _next_port, _next_port + 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def get(url):
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def wait_for(cond, what, limit=300):
    start = time.time()
    while not cond():
        if time.time() - start > limit:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.2)


def settle(pid, what, limit=120):
    """Waits until process `pid` uses under a tenth of a core over a second.
    Right after a load a store still works in the background (rtsd rolls
    up the windows it sealed for some 20 s, VictoriaMetrics merges parts),
    which would take a core from the queries timed."""
    def cpu_s():
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    start, before = time.time(), cpu_s()
    while True:
        time.sleep(1)
        now = cpu_s()
        if now - before < 0.1:
            return
        if time.time() - start > limit:
            sys.exit(f"timed out waiting for {what} to settle")
        before = now


def lines(with_hc=True):
    """1,000 series x 1 day at 60 s, 10 series x 30 days at 60 s, and
    (with_hc) 1,000,000 series of one point each."""
    for h in range(1000):
        for t in range(NOW - DAY, NOW, 60):
            yield f"put bench.a {t} {(t // 60 + h) % 97} host=h{h}\n"
    for h in range(10):
        for t in range(NOW - MONTH, NOW, 60):
            yield f"put bench.c {t} {(t // 60 * 7 + h) % 1000 / 10} host=c{h}\n"
    if not with_hc:
        return
    for h in range(HC_HOSTS):
        for c in range(HC_CORES):
            yield f"put bench.hc {HC_TS} {h % 100} host=hc{h} core={c}\n"


def send(port, data):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(data)


class Client:
    """One kept-alive HTTP/1.1 connection, reading just what the timing
    needs: the status, the body's length (Content-Length or chunked) and
    the body. http.client parses every header through the email package,
    which cost about 0.025 ms a response here (the floor (z) went from
    0.115 to 0.091 ms), a quarter of what rtsd spends answering (a): time
    under both servers' figures that only blurs their ratio."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=120)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = f"{host}:{port}".encode()
        self.buf = b""

    def close(self):
        self.sock.close()

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data

    def _take_line(self):
        while (end := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line, self.buf = self.buf[:end], self.buf[end + 2:]
        return line

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def get(self, target):
        """The status and body of GET `target` (path and query)."""
        self.sock.sendall(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: " + self.host + b"\r\n\r\n")
        status = int(self._take_line().split(b" ", 2)[1])
        length, chunked = None, False
        while line := self._take_line():
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if not chunked:
            return status, self._take(length or 0)
        body = []
        while size := int(self._take_line().split(b";")[0], 16):
            body.append(self._take(size))
            self._take_line()
        while self._take_line():  # trailers, then the empty line
            pass
        return status, b"".join(body)


def timed(url):
    """Median and p90 ms of `url`, asked over one kept-alive connection, as
    a dashboard asks: a new connection per request would time Python's
    connection setup (some 0.2 ms here) more than either server."""
    parts = urllib.parse.urlsplit(url)
    client = Client(parts.hostname, parts.port)
    target = f"{parts.path}?{parts.query}"

    def fetch():
        status, body = client.get(target)
        if status != 200:
            sys.exit(f"{url}: HTTP {status}")
        return body

    for _ in range(WARMUP):
        fetch()
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        body = fetch()
        samples.append((time.perf_counter() - start) * 1000)
    client.close()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1], len(body)


CLICKHOUSE_CONFIG = """<yandex>
<logger><level>warning</level><console>1</console></logger>
<http_port>{http}</http_port>
<tcp_port>{tcp}</tcp_port>
<listen_host>127.0.0.1</listen_host>
<path>{root}/data/</path>
<tmp_path>{root}/tmp/</tmp_path>
<user_files_path>{root}/user_files/</user_files_path>
<format_schema_path>{root}/format_schemas/</format_schema_path>
<users_config>{root}/users.xml</users_config>
<default_profile>default</default_profile>
<default_database>default</default_database>
<mark_cache_size>53687091</mark_cache_size>
</yandex>
"""
CLICKHOUSE_USERS = """<yandex>
<profiles><default></default></profiles>
<users><default><password></password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default></users>
<quotas><default></default></quotas>
</yandex>
"""


class ClickHouse:
    """A clickhouse-server of its own in a temp dir (the config shape
    tests/it/clickhouse_support.rs verified on 18.16), on free ports."""

    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="rtsd-ql-clickhouse-")
        http, tcp = free_port(), free_port()
        with open(os.path.join(self.dir, "config.xml"), "w") as f:
            f.write(CLICKHOUSE_CONFIG.format(http=http, tcp=tcp, root=self.dir))
        with open(os.path.join(self.dir, "users.xml"), "w") as f:
            f.write(CLICKHOUSE_USERS)
        self.log = open(os.path.join(self.dir, "clickhouse.log"), "w")
        self.proc = subprocess.Popen([binary, f"--config-file={self.dir}/config.xml"], cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.url = f"http://127.0.0.1:{http}"

        def ready():
            try:
                return get(self.url + "/?query=SELECT%201").strip() == b"1"
            except OSError:
                if self.proc.poll() is not None:
                    sys.exit(f"clickhouse-server exited at start; see {self.dir}/clickhouse.log")
                return False

        wait_for(ready, "clickhouse-server to answer", limit=60)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # 18.16 may wait for a merge; the data is thrown away anyway.
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def rtsd(binary, data, n, clickhouse=None):
    """Times (a)-(g) on the embedded store, or (a)-(c) and (c') on
    ClickHouse (a `ClickHouse`)."""
    clickhouse_url = clickhouse.url if clickhouse else None
    d = tempfile.mkdtemp(prefix="rtsd-ql-")
    with open(os.path.join(d, "rtsd.toml"), "w") as f:
        f.write("seal-grace-secs = 0\n")
    tport, hport = free_port(), free_port()
    store = ["--store", "clickhouse", "--clickhouse-url", clickhouse_url] if clickhouse_url else []
    proc = subprocess.Popen([binary, "serve", "--data-dir", os.path.join(d, "data"),
                             "--config", os.path.join(d, "rtsd.toml"),
                             "--listen", f"127.0.0.1:{tport}", "--http-listen", f"127.0.0.1:{hport}",
                             "--overflow", "block"] + store, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{hport}"

    def stat(name):
        for line in json.loads(get(base + "/api/stats")):
            if line["metric"] == name:
                return int(line["value"])
        return 0

    wait_for(lambda: port_open(hport), "rtsd to listen")
    send(tport, data)
    wait_for(lambda: stat("tsd.rtsd.points.stored") >= n, "rtsd to store")
    q = lambda m, start: f"{base}/api/query?start={start}&end={NOW}&m={urllib.parse.quote(m)}"
    if clickhouse_url:
        # Shipped: every point is in ClickHouse, where queries read.
        wait_for(lambda: stat("tsd.rtsd.spool.points") == 0, "rtsd to ship its spool", limit=600)
        # Every sealed hour's rollups computed: the shipper looks every
        # 30 s (the first time 30 s after start), so the count standing
        # still for longer means nothing is left.
        hours, since = -1, time.time()
        while time.time() - since < 35:
            now_hours = stat("tsd.rtsd.spool.rollups.hours")
            if now_hours != hours or now_hours == 0:
                hours, since = now_hours, time.time()
            if time.time() - since > 600:
                sys.exit("timed out waiting for rtsd to compute its rollups")
            time.sleep(1)
        settle(proc.pid, "rtsd")
        settle(clickhouse.proc.pid, "clickhouse-server")
        c = q("max:1h-max:bench.c{host=c1}", NOW - MONTH)
        out = {
            "a": timed(q("none:bench.a{host=h1}", NOW - DAY)),
            "b": timed(q("sum:1m-avg:bench.a", NOW - DAY)),
            "c": timed(c),
        }
        # Nothing marks these hours again, so (c) now reads points only.
        for table in ("rollup_1h", "rollup_1d"):
            urllib.request.urlopen(urllib.request.Request(
                clickhouse.url + "/", data=f"TRUNCATE TABLE rtsd.{table}".encode()), timeout=120).read()
        settle(clickhouse.proc.pid, "clickhouse-server")
        out["c'"] = timed(c)
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)
        return out
    # Everything but the current hour sealed into blocks and rollups.
    wait_for(lambda: stat("tsd.rtsd.storage.head.points") <= 1010 * 60, "rtsd to seal")
    settle(proc.pid, "rtsd")
    out = {
        "a": timed(q("none:bench.a{host=h1}", NOW - DAY)),
        "b": timed(q("sum:1m-avg:bench.a", NOW - DAY)),
        "c": timed(q("max:1h-max:bench.c{host=c1}", NOW - MONTH)),
        "d": timed(f"{base}/api/suggest?type=tagv&max=25&q={HC_PREFIX}"),
        "e": timed(q(f"sum:bench.hc{{host=wildcard({HC_PREFIX}*)}}", HC_TS - 60)),
        "f": timed(q(f"sum:bench.hc{{host=regexp(^{HC_PREFIX}[0-9]*$)}}", HC_TS - 60)),
        "g": timed(f"{base}/api/search/lookup?m={urllib.parse.quote('bench.hc{host=hc12345}')}"),
        "z": timed(f"{base}/api/version"),
    }
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    shutil.rmtree(d, ignore_errors=True)
    return out


def ms(value):
    """Two decimals below 10 ms, where a tenth is most of the figure."""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def victoria(binary, data, n):
    d = tempfile.mkdtemp(prefix="rtsd-ql-vm-")
    tport, hport = free_port(), free_port()
    proc = subprocess.Popen([binary, f"-storageDataPath={d}", f"-httpListenAddr=127.0.0.1:{hport}",
                             f"-opentsdbListenAddr=127.0.0.1:{tport}", "-loggerLevel=ERROR"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{hport}"
    wait_for(lambda: port_open(hport) and port_open(tport), "victoria-metrics to listen")
    send(tport, data)

    def inserted():
        for line in get(base + "/metrics").decode().splitlines():
            if line.startswith('vm_rows_inserted_total{type="opentsdb"}'):
                return int(float(line.split()[-1]))
        return 0

    wait_for(lambda: inserted() >= n, "victoria-metrics to store")
    get(base + "/internal/force_flush")
    settle(proc.pid, "victoria-metrics")
    rng = lambda q, start, step: (f"{base}/api/v1/query_range?nocache=1&query={urllib.parse.quote(q)}"
                                  f"&start={start}&end={NOW}&step={step}")
    series = urllib.parse.quote('bench.a{host="h1"}')
    out = {
        "a": timed(f"{base}/api/v1/export?match[]={series}&start={NOW - DAY}&end={NOW}"),
        "b": timed(rng("sum(avg_over_time(bench.a[1m]))", NOW - DAY, 60)),
        "c": timed(rng('max_over_time(bench.c{host="c1"}[1h])', NOW - MONTH, 3600)),
        "d": timed(f"{base}/api/v1/label/host/values?start={HC_TS - 60}&end={NOW}&match[]="
                   + urllib.parse.quote(f'bench.hc{{host=~"{HC_PREFIX}.*"}}')),
        "e": timed(rng(f'sum(bench.hc{{host=~"{HC_PREFIX}.*"}})', HC_TS - 60, 60)),
        "f": timed(rng(f'sum(bench.hc{{host=~"{HC_PREFIX}[0-9]*"}})', HC_TS - 60, 60)),
        "g": timed(f"{base}/api/v1/series?start={HC_TS - 60}&end={NOW}&match[]="
                   + urllib.parse.quote('bench.hc{host="hc12345"}')),
        "z": timed(f"{base}/health"),
    }
    proc.send_signal(signal.SIGTERM)
    proc.wait()
    shutil.rmtree(d, ignore_errors=True)
    return out


def main():
    parser = argparse.ArgumentParser(description="Query latency of rtsd against VictoriaMetrics.")
    parser.add_argument("rtsd", metavar="RTSD_BINARY")
    parser.add_argument("vm", metavar="VICTORIA_METRICS_BINARY", nargs="?")
    parser.add_argument("--clickhouse", action="store_true",
                        help="also time (a)-(c) on rtsd --store clickhouse")
    parser.add_argument("--clickhouse-bin", default="/usr/sbin/clickhouse-server")
    args = parser.parse_args()
    data = "".join(lines()).encode()
    n = data.count(b"\n")
    results = {"rtsd": rtsd(args.rtsd, data, n)}
    if args.clickhouse:
        server = ClickHouse(args.clickhouse_bin)
        ch_data = "".join(lines(with_hc=False)).encode()
        try:
            results["rtsd on ClickHouse"] = rtsd(args.rtsd, ch_data, ch_data.count(b"\n"), clickhouse=server)
        finally:
            server.stop()
    if args.vm:
        results["VictoriaMetrics"] = victoria(args.vm, data, n)
    names = {"a": "(a) one series, 1 day raw (1,440 points)",
             "b": "(b) sum of 1,000 series, 1m-avg, 1 day",
             "c": "(c) 1h-max of one series, 30 days",
             "c'": "(c') the same without stored rollups (ClickHouse)",
             "d": "(d) 1 M series: tag value suggestions for a prefix",
             "e": "(e) 1 M series: sum over a wildcard host filter (444 series)",
             "f": "(f) 1 M series: sum over a regexp host filter (444 series)",
             "g": "(g) 1 M series: series of one host (lookup)",
             "z": "(z) a trivial request: the client's and HTTP's floor"}
    systems = list(results)
    print(f"{n} points loaded; median / p90 ms over {RUNS} runs\n")
    print("| query | " + " | ".join(systems) + " |")
    print("|---|" + "---:|" * len(systems))
    for k, label in names.items():
        cells = [f"{ms(results[s][k][0])} / {ms(results[s][k][1])}" if k in results[s] else "—"
                 for s in systems]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
