//! Fuzz target `export_query`: see `ordersync_fuzz::export_query` for what it checks.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        ordersync_fuzz::export_query(data);
    });
}
