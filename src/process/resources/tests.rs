use std::time::{Duration, Instant};

use super::*;

const UNITS: Units = Units {
    ticks_per_second: 100,
    page_size: 4096,
};

/// A `/proc/self/stat` line as Linux writes it, with `comm` in the second field.
fn stat_line(comm: &str) -> String {
    // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime stime cutime cstime priority nice num_threads itrealvalue starttime vsize rss ...
    format!(
        "4242 ({comm}) S 1 4242 4242 0 -1 4194560 1510 0 0 0 \
         250 75 0 0 20 0 7 0 123456 104857600 2560 18446744073709551615 \
         94000000000000 94000000100000 140000000000000 0 0 0 0 4096 17638 0 0 0 17 1 0 0 0 0 0\n"
    )
}

#[test]
fn stat_fields_are_counted_from_the_last_parenthesis() {
    for comm in ["server", "my app", "a) R 9 9 (b", "))", "x (y) z"] {
        let figures = parse_stat(&stat_line(comm), UNITS).expect(comm);
        // (250 + 75) ticks at 100 per second.
        assert_eq!(
            figures.cpu_time,
            Some(Duration::from_millis(3_250)),
            "{comm}"
        );
        assert_eq!(figures.threads, Some(7), "{comm}");
        assert_eq!(figures.virtual_bytes, Some(104_857_600), "{comm}");
        assert_eq!(figures.rss_bytes, Some(2_560 * 4_096), "{comm}");
        assert_eq!(figures.open_fds, None);
    }
}

#[test]
fn stat_uses_the_process_clock_tick_and_page_size() {
    let units = Units {
        ticks_per_second: 1_024,
        page_size: 65_536,
    };
    let figures = parse_stat(&stat_line("app"), units).expect("parsed");
    // 325 ticks at 1024 per second.
    assert_eq!(
        figures.cpu_time,
        Some(Duration::from_nanos(325 * 1_000_000_000 / 1_024))
    );
    assert_eq!(figures.rss_bytes, Some(2_560 * 65_536));
}

#[test]
fn malformed_stat_gives_none_and_never_panics() {
    for bad in [
        "",
        "4242 (app",
        "4242 app S 1 2 3",
        "4242 (app) S 1 4242 4242 0 -1",
        ")",
        "\u{0}\u{ff}) ",
    ] {
        assert_eq!(parse_stat(bad, UNITS), None, "{bad:?}");
    }
    // One unreadable field is `None` alone; the others stay.
    let line = stat_line("app").replace(" 250 75 ", " 250 x75 ");
    let figures = parse_stat(&line, UNITS).expect("parsed");
    assert_eq!(figures.cpu_time, None);
    assert_eq!(figures.threads, Some(7));
    // Overflowing values are `None`, not a wrap or a panic.
    let line = stat_line("app").replace(" 2560 ", &format!(" {} ", u64::MAX));
    assert_eq!(parse_stat(&line, UNITS).expect("parsed").rss_bytes, None);
    let line = stat_line("app").replace(" 250 75 ", &format!(" {} 1 ", u64::MAX));
    assert_eq!(parse_stat(&line, UNITS).expect("parsed").cpu_time, None);
    // A zero tick rate does not divide by zero.
    let zero = Units {
        ticks_per_second: 0,
        page_size: 4096,
    };
    assert!(parse_stat(&stat_line("app"), zero).is_some());
}

fn auxv(pairs: &[(usize, usize)]) -> Vec<u8> {
    pairs
        .iter()
        .flat_map(|(k, v)| [k.to_ne_bytes(), v.to_ne_bytes()])
        .flatten()
        .collect()
}

#[test]
fn auxv_gives_clock_ticks_and_page_size_else_the_defaults() {
    let units = parse_auxv(&auxv(&[(3, 77), (6, 16_384), (17, 250), (0, 0), (6, 1)]));
    assert_eq!(
        units,
        Units {
            ticks_per_second: 250,
            page_size: 16_384
        }
    );
    assert_eq!(parse_auxv(&[]), DEFAULT_UNITS);
    assert_eq!(parse_auxv(&[1, 2, 3]), DEFAULT_UNITS);
    assert_eq!(parse_auxv(&auxv(&[(6, 0), (17, 0)])), DEFAULT_UNITS);
}

#[cfg(target_os = "linux")]
#[test]
fn the_kernel_reports_a_clock_tick_and_page_size() {
    let units = linux_units();
    assert!(units.ticks_per_second > 0);
    assert!(units.page_size.is_power_of_two() && units.page_size >= 4096);
}

#[cfg(target_os = "linux")]
#[test]
fn a_live_sample_is_plausible_and_counts_opened_files() {
    let sampler = ProcessSampler::new();
    let before = sampler.sample_now();
    let rss = before.memory_rss_bytes.expect("rss");
    assert!(rss > 1024 * 1024, "{rss}");
    assert!(before.memory_virtual_bytes.expect("virtual") >= rss);
    assert!(before.threads.expect("threads") >= 1);
    assert!(
        before.cpu_time.is_some(),
        "a new process may have used under one tick"
    );
    assert!(before.cpus.expect("cpus") >= 1);
    let fds = before.open_fds.expect("fds");
    assert!(fds >= 3, "{fds}");
    // The first sample has no interval to compute rates over.
    assert_eq!(before.cpu_cores_busy, None);
    assert_eq!(before.cpu_utilization, None);

    let files: Vec<std::fs::File> = (0..8)
        .map(|_| std::fs::File::open("/proc/self/stat").expect("open"))
        .collect();
    let worker = std::thread::spawn(|| std::thread::park_timeout(Duration::from_secs(30)));
    let after = sampler.sample_now();
    assert!(after.open_fds.expect("fds") >= fds + 8, "{after:?} {fds}");
    assert!(
        after.threads.expect("threads") >= 2,
        "this thread and the one parked"
    );
    drop(files);
    worker.thread().unpark();
    worker.join().expect("joined");
}

/// Busy-loops on this thread for `time`.
fn burn(time: Duration) -> u64 {
    let start = Instant::now();
    let mut x: u64 = 1;
    while start.elapsed() < time {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
    x
}

/// Busy-loops on this thread until the process has used `cpu` more CPU time (or 20 s pass,
/// so a machine shared with other work still gets there).
#[cfg(target_os = "linux")]
fn burn_cpu(cpu: Duration) {
    let cpu_time = || read_process().cpu_time.expect("cpu time");
    let target = cpu_time() + cpu;
    let deadline = Instant::now() + Duration::from_secs(20);
    while cpu_time() < target && Instant::now() < deadline {
        burn(Duration::from_millis(5));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn cpu_utilization_rises_when_the_process_burns_cpu() {
    let sampler = ProcessSampler::new();
    sampler.sample_now();
    std::thread::sleep(Duration::from_millis(300));
    let idle = sampler.sample_now();
    burn_cpu(Duration::from_millis(300));
    let busy = sampler.sample_now();

    let used = busy.cpu_time.expect("cpu time") - idle.cpu_time.expect("cpu time");
    assert!(used >= Duration::from_millis(300), "{used:?}");
    let idle_cores = idle.cpu_cores_busy.expect("idle rate");
    let busy_cores = busy.cpu_cores_busy.expect("busy rate");
    // One thread burning for the whole interval: close to one core on a quiet machine, less
    // when other work shares the cores, but well above the idle interval's figure.
    assert!(idle_cores < 0.2, "{idle_cores}");
    assert!(
        busy_cores > idle_cores + 0.1,
        "{idle_cores} -> {busy_cores}"
    );
    let cpus = busy.cpus.expect("cpus") as f64;
    assert!(busy_cores <= cpus + 0.1, "{busy_cores} of {cpus}");
    let utilization = busy.cpu_utilization.expect("utilization");
    assert!((utilization - (busy_cores / cpus).min(1.0)).abs() < 1e-9);
    assert!((0.0..=1.0).contains(&utilization));
    assert!(utilization > idle.cpu_utilization.expect("idle utilization"));
}

#[test]
fn without_a_runtime_there_are_no_tokio_figures() {
    let sample = ProcessSampler::new().sample_now();
    assert_eq!(sample.tokio_workers, None);
    assert_eq!(sample.tokio_alive_tasks, None);
    assert_eq!(sample.tokio_global_queue_depth, None);
    assert_eq!(sample.tokio_busy_ratio, None);
    assert_eq!(sample.tokio_busy_workers(), None);
}

#[test]
fn tokio_figures_come_from_the_runtime_it_was_made_in() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .build()
        .expect("runtime");
    // Made inside the runtime: `Handle::try_current` finds it.
    let sampler = runtime.block_on(async { ProcessSampler::new() });
    let first = sampler.sample_now();
    assert_eq!(first.tokio_workers, Some(3));
    assert_eq!(first.tokio_busy_ratio, None, "no interval yet");

    // Tasks that stay alive until told, then tasks that keep every worker busy.
    let (release, released) = tokio::sync::watch::channel(false);
    let waiting: Vec<_> = (0..5)
        .map(|_| {
            let mut released = released.clone();
            runtime.spawn(async move {
                let _ = released.wait_for(|r| *r).await;
            })
        })
        .collect();
    let burners: Vec<_> = (0..3)
        .map(|_| runtime.spawn(async { burn(Duration::from_millis(300)) }))
        .collect();
    let second = sampler.sample_now();
    assert!(second.tokio_alive_tasks.expect("alive") >= 5, "{second:?}");
    assert!(second.tokio_global_queue_depth.is_some());
    runtime.block_on(async {
        for burner in burners {
            burner.await.expect("burned");
        }
    });
    let _ = release.send(true);
    runtime.block_on(async {
        for task in waiting {
            task.await.expect("released");
        }
    });
    // Tokio adds busy time when a worker parks; poll until the burn shows.
    let deadline = Instant::now() + Duration::from_secs(10);
    let busy = loop {
        let sample = sampler.sample_now();
        let ratio = sample.tokio_busy_ratio.expect("ratio");
        assert!((0.0..=1.0).contains(&ratio));
        if ratio > 0.1 || Instant::now() > deadline {
            break sample;
        }
    };
    // Three workers, each busy about 300 ms of the interval since `second`.
    let ratio = busy.tokio_busy_ratio.expect("ratio");
    assert!(ratio > 0.1, "{busy:?}");
    assert!(busy.tokio_busy_workers().expect("busy workers") > 0.3);
}

#[test]
fn the_ring_keeps_the_last_samples_only() {
    let sampler = ProcessSampler::new();
    let taken: Vec<ProcessSample> = (0..RECENT_SAMPLES + 5)
        .map(|_| sampler.sample_now())
        .collect();
    let recent = sampler.recent();
    assert_eq!(recent.len(), RECENT_SAMPLES);
    assert_eq!(recent.as_slice(), &taken[5..]);
    assert_eq!(sampler.latest().as_ref(), taken.last());
    let summary = sampler.summary();
    assert_eq!(summary.latest.as_ref(), taken.last());
    assert_eq!(summary.recent.len(), RECENT_SAMPLES);
    let json = summary.to_json();
    assert_eq!(
        json["recent"].as_array().map(Vec::len),
        Some(RECENT_SAMPLES)
    );
    if cfg!(target_os = "linux") {
        assert!(json["latest"]["memory_rss_bytes"].as_u64().unwrap_or(0) > 0);
        assert!(json["latest"]["cpu_time_s"].as_f64().is_some());
    }
}

#[test]
fn the_interval_has_a_floor() {
    let sampler = ProcessSampler::new().with_interval(Duration::ZERO);
    assert_eq!(sampler.interval(), MIN_SAMPLE_INTERVAL);
}

#[test]
fn the_thread_samples_every_interval_until_stopped() {
    let sampler = ProcessSampler::new().with_interval(MIN_SAMPLE_INTERVAL);
    sampler.start();
    sampler.start(); // once only
    let deadline = Instant::now() + Duration::from_secs(10);
    while sampler.recent().len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sampler.recent().len() >= 3, "sampled in the background");
    sampler.stop();
    let worker = sampler
        .inner
        .worker
        .get()
        .and_then(Option::as_ref)
        .expect("started");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !worker.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(worker.is_finished(), "the thread ends on stop");
    // Samples stay readable, and can still be taken by hand.
    let before = sampler.recent().len();
    sampler.sample_now();
    assert_eq!(sampler.recent().len(), (before + 1).min(RECENT_SAMPLES));
}

#[test]
fn the_thread_holds_the_sampler_weakly() {
    let sampler = ProcessSampler::new().with_interval(MIN_SAMPLE_INTERVAL);
    sampler.start();
    let weak = sampler.downgrade();
    let deadline = Instant::now() + Duration::from_secs(10);
    while weak.latest().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(weak.latest().is_some());
    drop(sampler);
    // The thread upgrades only for the length of a sample; then nothing keeps it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while weak.latest().is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        weak.latest().is_none(),
        "dropping the last clone frees the sampler"
    );
}
