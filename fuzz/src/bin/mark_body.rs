//! Fuzz target `mark_body`: see `ordersync_fuzz::mark_body` for what it checks.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        ordersync_fuzz::mark_body(data);
    });
}
