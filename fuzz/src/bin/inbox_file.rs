//! Fuzz target `inbox_file`: see `ordersync_fuzz::inbox_file` for what it checks.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        ordersync_fuzz::inbox_file(data);
    });
}
