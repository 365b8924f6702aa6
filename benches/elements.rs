//! Per-element micro-benchmarks (criterion), one batch of 128 64-byte
//! packets per iteration. Whole-pipeline figures: benches/pipeline.rs.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use switchyard_core::{Annotations, Args, Batch, ElementClass, Harness, PortInfo, Processing};

const N: usize = 128;

fn frames() -> Batch {
    Batch::from_template(&switchyard_elements::default_frame(64), N, Annotations::default())
}

fn harness(class: &ElementClass, config: &str, inputs: usize, outputs: usize) -> Harness {
    let mut args = Args::parse_str(class.name, config);
    let mut e = (class.factory)(&mut args).expect("element configures");
    args.complete().expect("arguments");
    e.initialize(&PortInfo {
        inputs: vec![Processing::Push; inputs],
        outputs: vec![Processing::Push; outputs],
    })
    .expect("initialize");
    Harness::new(e, inputs, outputs)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("per batch of 128");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("create+drop (source->discard floor)", |b| b.iter(|| drop(frames())));
    let cases: [(&str, &ElementClass, &str, usize, usize); 5] = [
        ("Counter", &switchyard_elements::Counter::CLASS, "", 1, 1),
        ("Tee(2)", &switchyard_elements::Tee::CLASS, "2", 1, 2),
        ("InputSwitch(0)", &switchyard_elements::InputSwitch::CLASS, "0", 2, 1),
        (
            "Classifier(3 patterns)",
            &switchyard_elements::Classifier::CLASS,
            "12/0806, 12/0800 23/11, -",
            1,
            3,
        ),
        ("Paint", &switchyard_elements::Paint::CLASS, "1", 1, 1),
    ];
    for (name, class, config, ins, outs) in cases {
        let mut h = harness(class, config, ins, outs);
        g.bench_function(name, |b| {
            b.iter_batched(
                frames,
                |batch| {
                    h.push(0, batch);
                    for o in 0..outs {
                        h.take(o);
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
