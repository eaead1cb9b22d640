//! Statistics and tables.

use super::*;

pub(crate) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

pub(crate) fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        })
}

#[derive(Clone)]
pub(crate) struct Row {
    pub(crate) n: usize,
    pub(crate) steps: usize,
    pub(crate) times_ms: Vec<f64>,
    /// Highest heap size seen while the measured code ran, inputs the process already held
    /// included.
    pub(crate) peak_bytes: usize,
    /// Heap held before the measured code started: its inputs, for the pure planner.
    pub(crate) base_bytes: Option<usize>,
}

impl Row {
    pub(crate) fn median_ms(&self) -> f64 {
        median(&self.times_ms)
    }
}

pub(crate) fn print_table(title: &str, rows: &[Row]) {
    println!("\n{title}");
    println!(
        "  {:>5} {:>6} {:>6}  {:>9} {:>17}  {:>8}  {:>12} {:>6}  {:>8} {:>10}",
        "N",
        "units",
        "steps",
        "median ms",
        "min–max ms",
        "ms/inst",
        "t(N)/t(N/10)",
        "slope",
        "peak MiB",
        "inputs MiB"
    );
    for (index, row) in rows.iter().enumerate() {
        let t = row.median_ms();
        let (lo, hi) = min_max(&row.times_ms);
        let tenth = rows
            .iter()
            .find(|r| r.n * 10 == row.n)
            .map_or("—".to_string(), |r| format!("{:.1}", t / r.median_ms()));
        // log(t ratio) / log(N ratio) against the previous row: 1 = linear, 2 = quadratic.
        let slope = index.checked_sub(1).map_or("—".to_string(), |p| {
            let prev = &rows[p];
            format!(
                "{:.2}",
                (t / prev.median_ms()).ln() / (row.n as f64 / prev.n as f64).ln()
            )
        });
        println!(
            "  {:>5} {:>6} {:>6}  {:>9.2} {:>17}  {:>8.4}  {:>12} {:>6}  {:>8.2} {:>10}",
            row.n,
            row.n * UNITS,
            row.steps,
            t,
            format!("{lo:.2}–{hi:.2}"),
            t / row.n as f64,
            tenth,
            slope,
            mib(row.peak_bytes),
            row.base_bytes
                .map_or("—".to_string(), |b| format!("{:.2}", mib(b))),
        );
    }
}

pub(crate) fn action_counts(plan: &Plan) -> String {
    Action::ALL
        .iter()
        .map(|a| format!("{} {}", plan.count(*a), a.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}
