# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_ordersync_global_optspecs
    string join \n config= h/help V/version
end

function __fish_ordersync_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_ordersync_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_ordersync_using_subcommand
    set -l cmd (__fish_ordersync_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c ordersync -n "__fish_ordersync_needs_command" -l config -d 'The config file (relative paths in it resolve against its folder). Without it: ./config.toml, else /etc/ordersync/config.toml' -r -F
complete -c ordersync -n "__fish_ordersync_needs_command" -s h -l help -d 'Print help'
complete -c ordersync -n "__fish_ordersync_needs_command" -s V -l version -d 'Print version'
complete -c ordersync -n "__fish_ordersync_needs_command" -f -a "init" -d 'Write a commented config.toml and the folders into DIR (default: .)'
complete -c ordersync -n "__fish_ordersync_needs_command" -f -a "check" -d 'Validate the config and its folders, print every resolved setting'
complete -c ordersync -n "__fish_ordersync_needs_command" -f -a "run" -d 'Run the daemon in the foreground'
complete -c ordersync -n "__fish_ordersync_needs_command" -f -a "status" -d 'Per system: pending / written / acked; orders; errors'
complete -c ordersync -n "__fish_ordersync_needs_command" -f -a "orders" -d 'List or show orders'
complete -c ordersync -n "__fish_ordersync_needs_command" -f -a "inventory" -d 'Stock per SKU: in_stock, reserved, available'
complete -c ordersync -n "__fish_ordersync_needs_command" -f -a "reexport" -d 'Make every order acked by SYSTEM at or after SINCE pending again'
complete -c ordersync -n "__fish_ordersync_needs_command" -f -a "dump" -d 'Write the whole state as a portable dump (NDJSON: a header line, one record per line, a closing line), consistent as of one instant, while the daemon runs or not: the online backup, and the way to move a store to another machine or backend'
complete -c ordersync -n "__fish_ordersync_needs_command" -f -a "restore" -d 'Load a dump into a new, empty store: the configured one ([store]: sled in the state folder, or the PostgreSQL database), creating it; the daemon must not be running'
complete -c ordersync -n "__fish_ordersync_needs_command" -f -a "validate" -d 'Check inbox files exactly as the inbox would, applying nothing (exit 0: all valid; 1: any invalid). Needs no store; uses the config if there is one (its encoding, size limit and system ids)'
complete -c ordersync -n "__fish_ordersync_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ordersync -n "__fish_ordersync_using_subcommand init" -l config -d 'The config file (relative paths in it resolve against its folder). Without it: ./config.toml, else /etc/ordersync/config.toml' -r -F
complete -c ordersync -n "__fish_ordersync_using_subcommand init" -s h -l help -d 'Print help'
complete -c ordersync -n "__fish_ordersync_using_subcommand check" -l config -d 'The config file (relative paths in it resolve against its folder). Without it: ./config.toml, else /etc/ordersync/config.toml' -r -F
complete -c ordersync -n "__fish_ordersync_using_subcommand check" -s h -l help -d 'Print help'
complete -c ordersync -n "__fish_ordersync_using_subcommand run" -l config -d 'The config file (relative paths in it resolve against its folder). Without it: ./config.toml, else /etc/ordersync/config.toml' -r -F
complete -c ordersync -n "__fish_ordersync_using_subcommand run" -l once -d 'Drain the inbox, export, exit'
complete -c ordersync -n "__fish_ordersync_using_subcommand run" -s h -l help -d 'Print help'
complete -c ordersync -n "__fish_ordersync_using_subcommand status" -l timeout -d 'With --wait: give up (exit 1) after this long, e.g. "30s", "5m"' -r
complete -c ordersync -n "__fish_ordersync_using_subcommand status" -l config -d 'The config file (relative paths in it resolve against its folder). Without it: ./config.toml, else /etc/ordersync/config.toml' -r -F
complete -c ordersync -n "__fish_ordersync_using_subcommand status" -l json -d 'Print JSON: {"orders", "errors", "systems": {ID: {"pending", "written", "acked"}}}'
complete -c ordersync -n "__fish_ordersync_using_subcommand status" -l wait -d 'First wait until the inbox is drained and no order is pending to be written (by the running daemon; with none running, do it now, as `run --once`)'
complete -c ordersync -n "__fish_ordersync_using_subcommand status" -s h -l help -d 'Print help'
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and not __fish_seen_subcommand_from list show help" -l config -d 'The config file (relative paths in it resolve against its folder). Without it: ./config.toml, else /etc/ordersync/config.toml' -r -F
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and not __fish_seen_subcommand_from list show help" -s h -l help -d 'Print help'
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and not __fish_seen_subcommand_from list show help" -f -a "list" -d 'List orders, optionally only those of one system, or in one state'
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and not __fish_seen_subcommand_from list show help" -f -a "show" -d 'Show an order (by id or external id), its state per system and its timeline'
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and not __fish_seen_subcommand_from list show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and __fish_seen_subcommand_from list" -l system -d 'Only orders of this system (with --state: in that state)' -r
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and __fish_seen_subcommand_from list" -l state -d 'Only orders in this state: for --system, or without it for any configured system' -r -f -a "pending\t''
written\t''
acked\t''"
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and __fish_seen_subcommand_from list" -l limit -d 'At most this many orders' -r
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and __fish_seen_subcommand_from list" -l after -d 'Start after this order id (the last id of the previous page)' -r
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and __fish_seen_subcommand_from list" -l config -d 'The config file (relative paths in it resolve against its folder). Without it: ./config.toml, else /etc/ordersync/config.toml' -r -F
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and __fish_seen_subcommand_from list" -l json -d 'Print JSON: [{"id", "external_id", "reference", "created", "updated", "revision", "cancelled", "archived", "systems"}]'
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and __fish_seen_subcommand_from show" -l config -d 'The config file (relative paths in it resolve against its folder). Without it: ./config.toml, else /etc/ordersync/config.toml' -r -F
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and __fish_seen_subcommand_from show" -l json -d 'Print JSON: {"order", "systems", "timeline"}'
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and __fish_seen_subcommand_from help" -f -a "list" -d 'List orders, optionally only those of one system, or in one state'
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show an order (by id or external id), its state per system and its timeline'
complete -c ordersync -n "__fish_ordersync_using_subcommand orders; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ordersync -n "__fish_ordersync_using_subcommand inventory" -l sku -d 'Only this SKU' -r
complete -c ordersync -n "__fish_ordersync_using_subcommand inventory" -l config -d 'The config file (relative paths in it resolve against its folder). Without it: ./config.toml, else /etc/ordersync/config.toml' -r -F
complete -c ordersync -n "__fish_ordersync_using_subcommand inventory" -l json -d 'Print JSON: [{"sku", "in_stock", "reserved", "available"}]'
complete -c ordersync -n "__fish_ordersync_using_subcommand inventory" -s h -l help -d 'Print help'
complete -c ordersync -n "__fish_ordersync_using_subcommand reexport" -l system -d 'The system\'s id' -r
complete -c ordersync -n "__fish_ordersync_using_subcommand reexport" -l since -d 'RFC 3339 time, UNIX milliseconds, or a date (YYYY-MM-DD, UTC)' -r
complete -c ordersync -n "__fish_ordersync_using_subcommand reexport" -l config -d 'The config file (relative paths in it resolve against its folder). Without it: ./config.toml, else /etc/ordersync/config.toml' -r -F
complete -c ordersync -n "__fish_ordersync_using_subcommand reexport" -s h -l help -d 'Print help'
complete -c ordersync -n "__fish_ordersync_using_subcommand dump" -s o -l output -d 'Write it to FILE (made under a temporary name beside it, mode 0600, renamed when complete) instead of stdout' -r -F
complete -c ordersync -n "__fish_ordersync_using_subcommand dump" -l config -d 'The config file (relative paths in it resolve against its folder). Without it: ./config.toml, else /etc/ordersync/config.toml' -r -F
complete -c ordersync -n "__fish_ordersync_using_subcommand dump" -s h -l help -d 'Print help'
complete -c ordersync -n "__fish_ordersync_using_subcommand restore" -l config -d 'The config file (relative paths in it resolve against its folder). Without it: ./config.toml, else /etc/ordersync/config.toml' -r -F
complete -c ordersync -n "__fish_ordersync_using_subcommand restore" -s h -l help -d 'Print help'
complete -c ordersync -n "__fish_ordersync_using_subcommand validate" -l system -d 'Check as if dropped into this system\'s own drop folder: ack rows may only name this system' -r
complete -c ordersync -n "__fish_ordersync_using_subcommand validate" -l config -d 'The config file (relative paths in it resolve against its folder). Without it: ./config.toml, else /etc/ordersync/config.toml' -r -F
complete -c ordersync -n "__fish_ordersync_using_subcommand validate" -s h -l help -d 'Print help'
complete -c ordersync -n "__fish_ordersync_using_subcommand help; and not __fish_seen_subcommand_from init check run status orders inventory reexport dump restore validate help" -f -a "init" -d 'Write a commented config.toml and the folders into DIR (default: .)'
complete -c ordersync -n "__fish_ordersync_using_subcommand help; and not __fish_seen_subcommand_from init check run status orders inventory reexport dump restore validate help" -f -a "check" -d 'Validate the config and its folders, print every resolved setting'
complete -c ordersync -n "__fish_ordersync_using_subcommand help; and not __fish_seen_subcommand_from init check run status orders inventory reexport dump restore validate help" -f -a "run" -d 'Run the daemon in the foreground'
complete -c ordersync -n "__fish_ordersync_using_subcommand help; and not __fish_seen_subcommand_from init check run status orders inventory reexport dump restore validate help" -f -a "status" -d 'Per system: pending / written / acked; orders; errors'
complete -c ordersync -n "__fish_ordersync_using_subcommand help; and not __fish_seen_subcommand_from init check run status orders inventory reexport dump restore validate help" -f -a "orders" -d 'List or show orders'
complete -c ordersync -n "__fish_ordersync_using_subcommand help; and not __fish_seen_subcommand_from init check run status orders inventory reexport dump restore validate help" -f -a "inventory" -d 'Stock per SKU: in_stock, reserved, available'
complete -c ordersync -n "__fish_ordersync_using_subcommand help; and not __fish_seen_subcommand_from init check run status orders inventory reexport dump restore validate help" -f -a "reexport" -d 'Make every order acked by SYSTEM at or after SINCE pending again'
complete -c ordersync -n "__fish_ordersync_using_subcommand help; and not __fish_seen_subcommand_from init check run status orders inventory reexport dump restore validate help" -f -a "dump" -d 'Write the whole state as a portable dump (NDJSON: a header line, one record per line, a closing line), consistent as of one instant, while the daemon runs or not: the online backup, and the way to move a store to another machine or backend'
complete -c ordersync -n "__fish_ordersync_using_subcommand help; and not __fish_seen_subcommand_from init check run status orders inventory reexport dump restore validate help" -f -a "restore" -d 'Load a dump into a new, empty store: the configured one ([store]: sled in the state folder, or the PostgreSQL database), creating it; the daemon must not be running'
complete -c ordersync -n "__fish_ordersync_using_subcommand help; and not __fish_seen_subcommand_from init check run status orders inventory reexport dump restore validate help" -f -a "validate" -d 'Check inbox files exactly as the inbox would, applying nothing (exit 0: all valid; 1: any invalid). Needs no store; uses the config if there is one (its encoding, size limit and system ids)'
complete -c ordersync -n "__fish_ordersync_using_subcommand help; and not __fish_seen_subcommand_from init check run status orders inventory reexport dump restore validate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ordersync -n "__fish_ordersync_using_subcommand help; and __fish_seen_subcommand_from orders" -f -a "list" -d 'List orders, optionally only those of one system, or in one state'
complete -c ordersync -n "__fish_ordersync_using_subcommand help; and __fish_seen_subcommand_from orders" -f -a "show" -d 'Show an order (by id or external id), its state per system and its timeline'
