//! TEMPORARY stand-in until resmem::channel lands.
use crate::harness::Job;
pub const SIDE: &str = "resmem";
pub fn shm_prefix(run: u32) -> String {
    format!("rmchr{run}_")
}
pub fn pingpong(_: bool, _: usize, _: u64, _: usize) -> Vec<f64> {
    vec![f64::NAN]
}
pub fn stream(_: usize, _: u64, _: usize) -> Vec<f64> {
    vec![f64::NAN]
}
pub fn in_process(_: usize, _: u64) -> Vec<f64> {
    vec![f64::NAN]
}
pub fn growing_loan(_: usize) -> Vec<f64> {
    vec![f64::NAN]
}
pub struct Idle;
pub fn idle_start() -> Idle {
    Idle
}
impl Idle {
    pub fn finish(self) -> Vec<f64> {
        vec![f64::NAN]
    }
}
pub fn child(_: &Job) {
    unimplemented!()
}
