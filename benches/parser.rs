//! Telnet line parser throughput on the lines collectors actually send.
//! Each benchmark parses one line per iteration, so criterion's time is the
//! cost per line: `cargo bench --bench parser`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rtsd::protocol::{parse_line, Command, ParseOptions};

const LINES: &[(&str, &str)] = &[
    ("typical_float", "put sys.cpu.user 1700000000 42.5 host=web01 cpu=0"),
    ("integer_ms", "put proc.loadavg.1min 1700000000123 36 host=web01"),
    ("no_tags", "put telegraf.mem.used 1700000000 8123456789"),
    (
        "collectd_crlf",
        "put collectd.interface.if_octets.rx 1700000000 1.23456789012346e+15 fqdn=web01.example.com plugin_instance=eth0  \r",
    ),
    (
        "eight_tags",
        "put app.http.requests 1700000000.250 12 host=web01 dc=lga env=prod service=api method=GET code=200 region=us-east az=b",
    ),
    ("unicode", "put 温度.室内 1700000000 21.5 城市=北京 楼层=3"),
    ("rejected_value", "put sys.cpu.user 1700000000 -nan host=web01 cpu=0"),
];

fn parse(c: &mut Criterion) {
    let opts = ParseOptions::default();
    let mut group = c.benchmark_group("parse_line");
    group.throughput(Throughput::Elements(1));
    for &(name, line) in LINES {
        // A benchmark of the wrong outcome would measure nothing useful.
        let accepted = matches!(parse_line(line.as_bytes(), &opts), Ok(Command::Put(_)));
        assert_eq!(accepted, !name.starts_with("rejected"), "{name}");
        group.bench_function(name, |b| {
            b.iter(|| parse_line(black_box(line.as_bytes()), &opts))
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
