# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tenantctl_global_optspecs
    string join \n home= backup-dir= o/output= json q/quiet v/verbose no-progress actor= color= lock-timeout= h/help V/version
end

function __fish_tenantctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tenantctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tenantctl_using_subcommand
    set -l cmd (__fish_tenantctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tenantctl -n "__fish_tenantctl_needs_command" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_needs_command" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_needs_command" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_needs_command" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_needs_command" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_needs_command" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_needs_command" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "init" -d 'Create the home, the catalog and the starter tenant migrations'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "migrate" -d 'Apply or list catalog migrations'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "status" -d 'Show the state of the home at a glance'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "config" -d 'Read and change catalog settings'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "customer" -d 'Manage customers (tenants)'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "site" -d 'Manage customers\' sites, deployments and config snapshots'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "db" -d 'Tenant databases: migrate, status, SQL, path'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "resolve" -d 'Which customer serves a hostname'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "doctor" -d 'Check the catalog and every tenant database; --fix repairs what is safe'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "backup" -d 'Take a backup set, or list, show, verify and prune sets'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "restore" -d 'Put databases back from a backup set'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "import" -d 'Import the legacy file-based site configs'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "export" -d 'Write the catalog out in the legacy file layout'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "key" -d 'API keys: create, list, revoke, verify'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "session" -d 'Portal sessions: create, list, revoke, prune'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "usage" -d 'Record and report metered usage'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "quota" -d 'Check usage against limits, and enforce the storage limit'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "stats" -d 'Platform statistics for admins'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "plan" -d 'List and change plans and their quotas'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "server" -d 'Database servers that host tenants: add, list, show, test, update, remove'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "audit" -d 'List audit events, newest first'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "create-customer" -d 'Same as \'customer create\''
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "list-customers" -d 'Same as \'customer list\''
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "create-site" -d 'Same as \'site create\''
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "list-sites" -d 'Same as \'site list\''
complete -c tenantctl -n "__fish_tenantctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand init" -l tenant-migrations -d 'Keep tenant migrations in DIR instead of HOME/tenant-migrations' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand init" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand init" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand init" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand init" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand init" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand init" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand init" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand init" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand init" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand init" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand init" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand init" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -l from-files -d 'Import legacy configs from DIR instead (same as \'tenantctl import DIR\')' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -l plan -d 'With --from-files: plan for customers whose files name none' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -l dry-run -d 'Show what would be applied, change nothing'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -l status -d 'List applied and pending migrations with their checksums'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -l continue-on-error -d 'With --from-files: import the valid files even when some are invalid'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand migrate" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand status" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand status" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand status" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand status" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand status" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand status" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand status" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand status" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand status" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand status" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand status" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -f -a "get" -d 'Print one setting\'s value'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -f -a "set" -d 'Change a setting'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -f -a "unset" -d 'Remove a setting, so its default applies again'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -f -a "list" -d 'List every setting with its value and default'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and not __fish_seen_subcommand_from get set unset list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from get" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from get" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from get" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from get" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from get" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from get" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from get" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from get" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from get" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from get" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from get" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from get" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from set" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from set" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from set" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from set" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from set" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from set" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from set" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from set" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from set" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from set" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from set" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from unset" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from unset" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from unset" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from unset" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from unset" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from unset" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from unset" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from unset" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from unset" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from unset" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from unset" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from unset" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from list" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from list" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from list" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from list" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from list" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from list" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from list" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "get" -d 'Print one setting\'s value'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "set" -d 'Change a setting'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "unset" -d 'Remove a setting, so its default applies again'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "list" -d 'List every setting with its value and default'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -f -a "create" -d 'Create a customer and its own tenant database'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -f -a "add" -d 'Create a customer and its own tenant database'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -f -a "list" -d 'List customers'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -f -a "ls" -d 'List customers'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -f -a "show" -d 'Show a customer with usage against quota and its sites'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -f -a "update" -d 'Change a customer\'s details, plan, quota overrides or metadata'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -f -a "suspend" -d 'Suspend a customer (its keys stop working)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -f -a "reactivate" -d 'Make a suspended customer active again'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -f -a "delete" -d 'Soft-delete: stop sites, revoke keys and sessions, move the database to the trash'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -f -a "undelete" -d 'Reverse a soft delete'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -f -a "purge" -d 'Remove a deleted customer\'s database, sites, snapshots and keys for good'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -f -a "move" -d 'Move a customer\'s tenant database to another server or engine'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and not __fish_seen_subcommand_from create add list ls show update suspend reactivate delete undelete purge move help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -l plan -d 'Plan [default: the default_plan setting, or starter]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -l slug -d 'Slug (DNS label) [default: derived from the company or the email]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -l meta -d 'Metadata entry key=value (value parsed as JSON when it can be); repeatable' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -l server -d 'Where its database goes: \'local\', a server name, or \'auto\' (the active server with the most free capacity) [default: the default_server setting, or local]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -l plan -d 'Plan [default: the default_plan setting, or starter]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -l slug -d 'Slug (DNS label) [default: derived from the company or the email]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -l meta -d 'Metadata entry key=value (value parsed as JSON when it can be); repeatable' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -l server -d 'Where its database goes: \'local\', a server name, or \'auto\' (the active server with the most free capacity) [default: the default_server setting, or local]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -l plan -d 'Only customers on this plan' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -l status -d 'Only customers in this status' -r -f -a "active\t''
suspended\t''
deleted\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -l search -d 'Only customers whose slug, email, name or company contains TEXT' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -l limit -d 'Show at most N customers; 0 for all' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -l plan -d 'Only customers on this plan' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -l status -d 'Only customers in this status' -r -f -a "active\t''
suspended\t''
deleted\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -l search -d 'Only customers whose slug, email, name or company contains TEXT' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -l limit -d 'Show at most N customers; 0 for all' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from ls" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from show" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from show" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from show" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from show" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from show" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from show" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from show" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from show" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l email -d 'New contact email' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l name -d 'New contact name' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l company -d 'New company name (\'\' clears it)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l plan -d 'New plan; refused (exit 5) when it would put the customer over a quota' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l max-sites -d 'Override the plan\'s max sites (\'none\' goes back to the plan\'s)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l max-storage-mb -d 'Override the plan\'s storage in MiB (\'none\' goes back to the plan\'s)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l max-bandwidth-gb -d 'Override the plan\'s monthly bandwidth in GiB (\'none\' goes back to the plan\'s)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l max-api-calls -d 'Override the plan\'s monthly API calls (\'none\' goes back to the plan\'s)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l meta -d 'Set metadata key=value (an empty value removes the key); repeatable' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l force -d 'Apply a change even when it puts the customer over a quota'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from update" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from suspend" -l reason -d 'Why, for the audit log and the customer record' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from suspend" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from suspend" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from suspend" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from suspend" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from suspend" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from suspend" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from suspend" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from suspend" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from suspend" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from suspend" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from suspend" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from suspend" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from reactivate" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from reactivate" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from reactivate" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from reactivate" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from reactivate" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from reactivate" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from reactivate" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from reactivate" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from reactivate" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from reactivate" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from reactivate" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from reactivate" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from delete" -l confirm -d 'The customer\'s slug (or id), to confirm' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from delete" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from delete" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from delete" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from delete" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from delete" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from delete" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from delete" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from delete" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -l from-backup -d 'Take the database from a backup set (default: the newest holding the customer)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -l at -d 'With --from-backup: the newest set finished at or before TIME' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from undelete" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from purge" -l confirm -d 'The customer\'s slug (or id), to confirm' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from purge" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from purge" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from purge" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from purge" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from purge" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from purge" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from purge" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from purge" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from purge" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from purge" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from purge" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from purge" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -l to -d 'Where to: a server name, or \'local\' for the home\'s SQLite folder' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -l online -d 'Keep the tenant writable while its rows copy: logical replication from one PostgreSQL server to another; writes freeze only for the final catch-up'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -l dry-run -d 'Print the plan (tables, rows, size, method, freeze) and check every value converts, changing nothing'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -l finish -d 'Drop the old copy that a finished move kept'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -l abort -d 'Undo a move that has not switched the placement yet'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from move" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a customer and its own tenant database'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from help" -f -a "list" -d 'List customers'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show a customer with usage against quota and its sites'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from help" -f -a "update" -d 'Change a customer\'s details, plan, quota overrides or metadata'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from help" -f -a "suspend" -d 'Suspend a customer (its keys stop working)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from help" -f -a "reactivate" -d 'Make a suspended customer active again'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Soft-delete: stop sites, revoke keys and sessions, move the database to the trash'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from help" -f -a "undelete" -d 'Reverse a soft delete'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from help" -f -a "purge" -d 'Remove a deleted customer\'s database, sites, snapshots and keys for good'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from help" -f -a "move" -d 'Move a customer\'s tenant database to another server or engine'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand customer; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "create" -d 'Create a site for a customer, within its plan\'s site limit'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "add" -d 'Create a site for a customer, within its plan\'s site limit'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "list" -d 'List sites, streamed (use -o ndjson for very large listings)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "ls" -d 'List sites, streamed (use -o ndjson for very large listings)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "show" -d 'Show one site with its config'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "update" -d 'Change a site; the old config is kept as a manual snapshot first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "delete" -d 'Delete a site with its deployments and snapshots'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "deploy" -d 'Record a deployment of the site\'s current config and mark it deployed'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "deployments" -d 'List a site\'s deployments, oldest first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "rollback" -d 'Deploy the config of an earlier deployment again'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "snapshot" -d 'Save a copy of the site\'s config'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "snapshots" -d 'List a site\'s config snapshots, oldest first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "restore" -d 'Put a snapshot\'s config back (the current one is kept as a pre-restore snapshot)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and not __fish_seen_subcommand_from create add list ls show update delete deploy deployments rollback snapshot snapshots restore help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -l domain -d 'Domain, unique across sites [default: <name>.<slug>.<platform_domain>]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -l port -d 'Port, unique across sites (1-65535)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -l business-type -d 'Kind of business, e.g. translation or shop' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -l config -d 'Config JSON object from FILE, or \'-\' for stdin' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -l domain -d 'Domain, unique across sites [default: <name>.<slug>.<platform_domain>]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -l port -d 'Port, unique across sites (1-65535)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -l business-type -d 'Kind of business, e.g. translation or shop' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -l config -d 'Config JSON object from FILE, or \'-\' for stdin' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -l status -d 'Only sites in this status' -r -f -a "draft\t''
deployed\t''
stopped\t''
failed\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -l domain -d 'Only sites whose domain contains TEXT' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -l limit -d 'Show at most N sites; 0 for all' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -l status -d 'Only sites in this status' -r -f -a "draft\t''
deployed\t''
stopped\t''
failed\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -l domain -d 'Only sites whose domain contains TEXT' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -l limit -d 'Show at most N sites; 0 for all' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from ls" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from show" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from show" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from show" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from show" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from show" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from show" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from show" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from show" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -l name -d 'New name' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -l domain -d 'New domain' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -l port -d 'New port (1-65535), or \'none\' to remove it' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -l status -d 'New status' -r -f -a "draft\t''
deployed\t''
stopped\t''
failed\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -l config -d 'Replace the config with a JSON object from FILE, or \'-\' for stdin' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -l set -d 'Set one config value by dotted path (value parsed as JSON, else a string); repeatable' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from update" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from delete" -l confirm -d 'The site\'s domain (or id), to confirm' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from delete" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from delete" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from delete" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from delete" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from delete" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from delete" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from delete" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from delete" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deploy" -l port -d 'Deploy on this port (1-65535) instead of the site\'s' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deploy" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deploy" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deploy" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deploy" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deploy" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deploy" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deploy" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deploy" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deploy" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deploy" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deploy" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deploy" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deployments" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deployments" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deployments" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deployments" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deployments" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deployments" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deployments" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deployments" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deployments" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deployments" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deployments" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from deployments" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from rollback" -l to -d 'Deployment number to go back to [default: the one before the newest]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from rollback" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from rollback" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from rollback" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from rollback" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from rollback" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from rollback" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from rollback" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from rollback" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from rollback" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from rollback" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from rollback" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from rollback" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshot" -l name -d 'A name for the snapshot' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshot" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshot" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshot" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshot" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshot" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshot" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshot" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshot" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshot" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshot" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshot" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshot" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshots" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshots" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshots" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshots" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshots" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshots" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshots" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshots" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshots" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshots" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshots" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from snapshots" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from restore" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from restore" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from restore" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from restore" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from restore" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from restore" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from restore" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from restore" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from restore" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from restore" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from restore" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from restore" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a site for a customer, within its plan\'s site limit'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from help" -f -a "list" -d 'List sites, streamed (use -o ndjson for very large listings)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one site with its config'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from help" -f -a "update" -d 'Change a site; the old config is kept as a manual snapshot first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a site with its deployments and snapshots'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from help" -f -a "deploy" -d 'Record a deployment of the site\'s current config and mark it deployed'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from help" -f -a "deployments" -d 'List a site\'s deployments, oldest first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from help" -f -a "rollback" -d 'Deploy the config of an earlier deployment again'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from help" -f -a "snapshot" -d 'Save a copy of the site\'s config'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from help" -f -a "snapshots" -d 'List a site\'s config snapshots, oldest first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from help" -f -a "restore" -d 'Put a snapshot\'s config back (the current one is kept as a pre-restore snapshot)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand site; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -f -a "migrate" -d 'Apply tenant migrations to every tenant (or those named), in parallel'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -f -a "rollback" -d 'Undo tenant migrations down to version N by their down scripts, in parallel'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -f -a "status" -d 'Per-tenant schema version, size and last migration, with a summary line first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -f -a "sql" -d 'Run one SQL statement, or a script with -f, on a tenant database (read-only unless --write)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -f -a "history" -d 'List the recorded \'db sql\' and \'db vacuum\' runs, newest first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -f -a "vacuum" -d 'Compact tenant databases (VACUUM, then ANALYZE) and report the bytes reclaimed'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -f -a "path" -d 'Print where a customer\'s database is: its file (for sqlite3), or on a server its role\'s URL without the password'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -f -a "url" -d 'Print the URL an application connects to a customer\'s database with'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -f -a "rotate-password" -d 'Give server tenants\' login roles new passwords'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and not __fish_seen_subcommand_from migrate rollback status sql history vacuum path url rotate-password help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l target -d 'Migrate up to version N instead of the newest' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l jobs -d 'Tenants migrated at once [default: 8 per CPU, since tenants wait on fsync, not the CPU]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l jobs-per-server -d 'Connections held at once on each database server (never more than it has free)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l canary -d 'Migrate N tenants first and stop if any of them fails' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l all -d 'Migrate every tenant that is not deleted (the default when no customer is named)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l dry-run -d 'Show what would be applied, change nothing'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l continue-on-error -d 'Go on with the other tenants after a failure (exit 8 at the end)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from migrate" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l to -d 'The version to go back to: one that exists, below the newest (0 needs --confirm all-data)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l jobs -d 'Tenants rolled back at once [default: 8 per CPU]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l jobs-per-server -d 'Connections held at once on each database server (never more than it has free)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l canary -d 'Roll back N tenants first and stop if any of them fails' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l confirm -d '\'all-data\', required with --to 0, which drops every table the migrations made' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l all -d 'Roll back every tenant that is not deleted (the default when no customer is named)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l dry-run -d 'Show what would be undone, change nothing'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l continue-on-error -d 'Go on with the other tenants after a failure (exit 8 at the end)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rollback" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -l server -d 'Only tenants on this server (\'local\' for the SQLite files)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -l jobs-per-server -d 'Connections held at once on each database server (never more than it has free)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -l behind -d 'Only tenants behind the newest migration'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -l failed -d 'Only tenants whose last migration failed'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -l check -d 'Also open every tenant database: quick_check and the version it really has'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -s f -l file -d 'Run the statements in FILE (\'-\' for stdin) as one transaction' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -l timeout -d 'Stop a statement that runs longer than this, e.g. 30s or 5m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -l jobs-per-server -d 'Connections held at once on each database server (never more than it has free)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -l all -d 'Run the same read-only statement on every active tenant; its rows start with a tenant column'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -l write -d 'Allow the statement to change data'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from sql" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -l since -d 'Only runs at or after TIME (RFC 3339, YYYY-MM-DD, or an age such as 24h or 7d)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -l limit -d 'Show at most N runs; 0 for all' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -l failed -d 'Only runs that failed'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from history" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -l jobs -d 'Tenants compacted at once [default: 2 per CPU]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -l jobs-per-server -d 'Connections held at once on each database server (never more than it has free)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -l all -d 'Compact every tenant database that is not deleted'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from vacuum" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from path" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from path" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from path" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from path" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from path" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from path" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from path" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from path" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from path" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from path" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from path" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from path" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from url" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from url" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from url" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from url" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from url" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from url" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from url" -l reveal -d 'Put the tenant role\'s password into the URL'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from url" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from url" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from url" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from url" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from url" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from url" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rotate-password" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rotate-password" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rotate-password" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rotate-password" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rotate-password" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rotate-password" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rotate-password" -l all -d 'Every server tenant that is not deleted'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rotate-password" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rotate-password" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rotate-password" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rotate-password" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rotate-password" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from rotate-password" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "migrate" -d 'Apply tenant migrations to every tenant (or those named), in parallel'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "rollback" -d 'Undo tenant migrations down to version N by their down scripts, in parallel'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "status" -d 'Per-tenant schema version, size and last migration, with a summary line first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "sql" -d 'Run one SQL statement, or a script with -f, on a tenant database (read-only unless --write)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "history" -d 'List the recorded \'db sql\' and \'db vacuum\' runs, newest first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "vacuum" -d 'Compact tenant databases (VACUUM, then ANALYZE) and report the bytes reclaimed'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "path" -d 'Print where a customer\'s database is: its file (for sqlite3), or on a server its role\'s URL without the password'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "url" -d 'Print the URL an application connects to a customer\'s database with'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "rotate-password" -d 'Give server tenants\' login roles new passwords'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand db; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand resolve" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand resolve" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand resolve" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand resolve" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand resolve" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand resolve" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand resolve" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand resolve" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand resolve" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand resolve" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand resolve" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand resolve" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -l fix -d 'Repair what is safe to repair (modes, recorded versions, crash leftovers)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -l adopt -d 'With --fix: give each tenant database no customer owns its customer again (details from the newest backup that knew it)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -l trash -d 'With --fix: move each tenant database no customer owns to the trash'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -l full -d 'Check the integrity of every tenant database, also those unchanged since their last clean check'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -l customer -d 'Only these customers\' databases (slug, id or email); repeatable' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -l label -d 'A label stored in the manifest' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -l kind -d 'Why the set was taken' -r -f -a "manual\t''
scheduled\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -l jobs-per-server -d 'Dumps run at once on each database server (never more than it has connections free)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -l all -d 'The catalog and every tenant that is not deleted (the default)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -l catalog -d 'Only the catalog'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -f -a "list" -d 'List backup sets from their manifests (works without the catalog)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -f -a "show" -d 'Show one set\'s manifest'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -f -a "verify" -d 'Recompute checksums and quick_check every file (default: the newest set)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -f -a "prune" -d 'Remove sets outside the retention policy; never the newest set'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and not __fish_seen_subcommand_from list show verify prune help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from list" -l customer -d 'Only sets holding this customer (slug or id)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from list" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from list" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from list" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from list" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from list" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from list" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from list" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from show" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from show" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from show" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from show" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from show" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from show" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from show" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from show" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l scratch-server -d 'With --deep, restore archives on this server instead of the one they came from' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l all -d 'Verify every set'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l deep -d 'Restore every copy to check it, not only its checksum and structure'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -l keep-last -d 'Keep the N newest sets [default: the backup_keep_last setting]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -l keep-daily -d 'Keep the newest set of each of the last N days [default: backup_keep_daily]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -l keep-weekly -d 'Keep the newest set of each of the last N weeks [default: backup_keep_weekly]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -l keep-monthly -d 'Keep the newest set of each of the last N months [default: backup_keep_monthly]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -l dry-run -d 'Show what would be removed, remove nothing'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from prune" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "list" -d 'List backup sets from their manifests (works without the catalog)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one set\'s manifest'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Recompute checksums and quick_check every file (default: the newest set)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "prune" -d 'Remove sets outside the retention policy; never the newest set'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l at -d 'Use the newest set finished at or before TIME, to the microsecond (RFC 3339, date, or age such as 6h)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l customer -d 'Restore these customers\' databases; repeatable (a deleted customer comes back with \'customer undelete CUSTOMER --from-backup\')' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l confirm -d '\'catalog\' or \'everything\', to confirm' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l into -d 'Copy the one --customer\'s data into this other existing customer' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l catalog -d 'Restore the catalog (needs --confirm catalog)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l everything -d 'Restore the catalog and every tenant in the set (needs --confirm everything)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l if-missing -d 'Only restore tenants whose database file is absent'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l dry-run -d 'Show the set that would be used, what it would replace or create and what the pre-restore set would save first; change nothing (needs no --confirm)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand restore" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -l plan -d 'Plan for customers whose files name none [default: the default_plan setting]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -l dry-run -d 'Report what would happen, write nothing'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -l continue-on-error -d 'Import the valid files even when some are invalid (exit 8)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand import" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand export" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand export" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand export" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand export" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand export" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand export" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand export" -l force -d 'Replace a folder that is not empty: a fresh tree is written beside it and swapped in'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand export" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand export" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand export" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand export" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand export" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand export" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -f -a "create" -d 'Create an API key; its token is printed once'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -f -a "list" -d 'List API keys (never their secrets)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -f -a "revoke" -d 'Revoke an API key'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -f -a "verify" -d 'Check a token: exit 0 with its customer and scopes, exit 3 if not valid'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and not __fish_seen_subcommand_from create list revoke verify help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -l name -d 'What the key is for' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -l scope -d 'A scope such as sites:read or deploy (lowercase; \'config set key_scopes\' may restrict them); repeatable [default: sites:read]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -l expires-in -d 'Expire after this long, e.g. 90d or 12h' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from list" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from list" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from list" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from list" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from list" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from list" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from list" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from revoke" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from revoke" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from revoke" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from revoke" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from revoke" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from revoke" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from revoke" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from revoke" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from revoke" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from revoke" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from revoke" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from verify" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from verify" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from verify" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from verify" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from verify" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from verify" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from verify" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from verify" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from verify" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from verify" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from verify" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create an API key; its token is printed once'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "list" -d 'List API keys (never their secrets)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke an API key'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Check a token: exit 0 with its customer and scopes, exit 3 if not valid'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -f -a "create" -d 'Open a portal session for a customer (as the portal does at login); the token is printed once'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -f -a "list" -d 'List sessions (never their tokens)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -f -a "revoke" -d 'Revoke a session, or every session of a customer'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -f -a "prune" -d 'Delete expired sessions (for cron)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and not __fish_seen_subcommand_from create list revoke prune help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -l device -d 'The device or browser' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -l ttl -d 'How long the session lives, e.g. 7d or 12h' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from list" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from list" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from list" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from list" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from list" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from list" -l active -d 'Only sessions that are neither revoked, expired nor blocked'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from list" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from list" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -l customer -d 'Revoke this customer\'s sessions (with --all)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -l all -d 'Every session of --customer'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from revoke" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from prune" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from prune" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from prune" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from prune" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from prune" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from prune" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from prune" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from prune" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from prune" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from prune" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from prune" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from prune" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from help" -f -a "create" -d 'Open a portal session for a customer (as the portal does at login); the token is printed once'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from help" -f -a "list" -d 'List sessions (never their tokens)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke a session, or every session of a customer'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from help" -f -a "prune" -d 'Delete expired sessions (for cron)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand session; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -f -a "record" -d 'Record metered usage'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -f -a "report" -d 'Usage per customer for a month, with storage measured now'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and not __fish_seen_subcommand_from record report help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from record" -l at -d 'When it was used [default: now]; sets the month' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from record" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from record" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from record" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from record" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from record" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from record" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from record" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from record" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from record" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from record" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from record" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from record" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from report" -l month -d 'YYYY-MM [default: this month]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from report" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from report" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from report" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from report" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from report" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from report" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from report" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from report" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from report" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from report" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from report" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from report" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "record" -d 'Record metered usage'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "report" -d 'Usage per customer for a month, with storage measured now'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand usage; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -f -a "check" -d 'Usage against limits; exit 5 if any customer is over'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -f -a "enforce" -d 'For cron: warn at 80 % and suspend at 100 % of the storage limit'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and not __fish_seen_subcommand_from check enforce help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from check" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from check" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from check" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from check" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from check" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from check" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from check" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from check" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from check" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from check" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from enforce" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from enforce" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from enforce" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from enforce" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from enforce" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from enforce" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from enforce" -l dry-run -d 'Say what would be done, do nothing'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from enforce" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from enforce" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from enforce" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from enforce" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from enforce" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from enforce" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from help" -f -a "check" -d 'Usage against limits; exit 5 if any customer is over'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from help" -f -a "enforce" -d 'For cron: warn at 80 % and suspend at 100 % of the storage limit'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand quota; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand stats" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand stats" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand stats" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand stats" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand stats" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand stats" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand stats" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand stats" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand stats" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand stats" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand stats" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand stats" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -f -a "list" -d 'List plans with their quotas and how many customers use each'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -f -a "set" -d 'Create a plan or change its quotas'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and not __fish_seen_subcommand_from list set help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from list" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from list" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from list" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from list" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from list" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from list" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from list" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -l max-sites -d 'Sites a customer may have' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -l max-storage-mb -d 'Tenant database size in MiB' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -l max-bandwidth-gb -d 'Bandwidth per month in GiB' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -l max-api-calls -d 'API calls per month' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -l force -d 'Apply a change even when it puts customers on the plan over a quota'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from set" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from help" -f -a "list" -d 'List plans with their quotas and how many customers use each'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from help" -f -a "set" -d 'Create a plan or change its quotas'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand plan; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -f -a "add" -d 'Register a PostgreSQL server that tenants can be placed on'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -f -a "list" -d 'List the servers, the built-in \'local\' first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -f -a "show" -d 'Show one server (its password as ***)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -f -a "test" -d 'Connect to a server: reachability, latency, version, tenants, free capacity'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -f -a "update" -d 'Change a server\'s login, capacity or status'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -f -a "remove" -d 'Forget a server that hosts no tenant (its databases stay on it)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and not __fish_seen_subcommand_from add list show test update remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -l url -d 'Admin login: postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -l mode -d 'One database per tenant, or one schema per tenant in the URL\'s database' -r -f -a "database\t''
schema\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -l capacity -d 'Most tenants the server may hold (default: no limit)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -l password-stdin -d 'Read the login\'s password from the first line of stdin'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from list" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from list" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from list" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from list" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from list" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from list" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from list" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from list" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from list" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from show" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from show" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from show" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from show" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from show" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from show" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from show" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from show" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from show" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from show" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from test" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from test" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from test" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from test" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from test" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from test" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from test" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from test" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from test" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from test" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from test" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from test" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -l url -d 'A new admin login URL (checked against the server before it is saved)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -l capacity -d 'Most tenants the server may hold' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -l status -d '\'draining\' keeps its tenants but places no new ones on it' -r -f -a "active\t''
draining\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -l password-stdin -d 'Read a new password for the login from the first line of stdin'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from update" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from remove" -l confirm -d 'The server\'s name, to confirm' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from remove" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from remove" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from remove" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from remove" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from remove" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from remove" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from remove" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from remove" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from remove" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "add" -d 'Register a PostgreSQL server that tenants can be placed on'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the servers, the built-in \'local\' first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one server (its password as ***)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "test" -d 'Connect to a server: reachability, latency, version, tenants, free capacity'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "update" -d 'Change a server\'s login, capacity or status'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Forget a server that hosts no tenant (its databases stay on it)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand server; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -l customer -d 'Only events of this customer (slug, id or email)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -l action -d 'Only this action (customer.create), or actions starting with a prefix ending in \'.\'' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -l since -d 'Only events at or after TIME (RFC 3339, YYYY-MM-DD, or an age such as 24h or 7d)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -l limit -d 'Show at most N events; 0 for all' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand audit" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand completions" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand completions" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand completions" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand completions" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand completions" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand completions" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand completions" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand completions" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand completions" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand completions" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand completions" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -l plan -d 'Plan [default: the default_plan setting, or starter]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -l slug -d 'Slug (DNS label) [default: derived from the company or the email]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -l meta -d 'Metadata entry key=value (value parsed as JSON when it can be); repeatable' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -l server -d 'Where its database goes: \'local\', a server name, or \'auto\' (the active server with the most free capacity) [default: the default_server setting, or local]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-customer" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -l plan -d 'Only customers on this plan' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -l status -d 'Only customers in this status' -r -f -a "active\t''
suspended\t''
deleted\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -l search -d 'Only customers whose slug, email, name or company contains TEXT' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -l limit -d 'Show at most N customers; 0 for all' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-customers" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -l domain -d 'Domain, unique across sites [default: <name>.<slug>.<platform_domain>]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -l port -d 'Port, unique across sites (1-65535)' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -l business-type -d 'Kind of business, e.g. translation or shop' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -l config -d 'Config JSON object from FILE, or \'-\' for stdin' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand create-site" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -l status -d 'Only sites in this status' -r -f -a "draft\t''
deployed\t''
stopped\t''
failed\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -l domain -d 'Only sites whose domain contains TEXT' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -l limit -d 'Show at most N sites; 0 for all' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -l home -d 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -l backup-dir -d 'Where backup sets live [default: HOME/backups]' -r -F
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -s o -l output -d 'Output format [default: table]' -r -f -a "table\t''
json\t''
ndjson\t''
csv\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -l actor -d 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -l color -d 'When to colour messages (NO_COLOR is honoured with auto)' -r -f -a "auto\t''
always\t''
never\t''"
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -l lock-timeout -d 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m' -r
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -l json -d 'Same as --output json'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -s q -l quiet -d 'Print only data and errors'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -s v -l verbose -d 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -l no-progress -d 'Never draw progress bars'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -s h -l help -d 'Print help'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand list-sites" -s V -l version -d 'Print version'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "init" -d 'Create the home, the catalog and the starter tenant migrations'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "migrate" -d 'Apply or list catalog migrations'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "status" -d 'Show the state of the home at a glance'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "config" -d 'Read and change catalog settings'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "customer" -d 'Manage customers (tenants)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "site" -d 'Manage customers\' sites, deployments and config snapshots'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "db" -d 'Tenant databases: migrate, status, SQL, path'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "resolve" -d 'Which customer serves a hostname'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "doctor" -d 'Check the catalog and every tenant database; --fix repairs what is safe'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "backup" -d 'Take a backup set, or list, show, verify and prune sets'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "restore" -d 'Put databases back from a backup set'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "import" -d 'Import the legacy file-based site configs'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "export" -d 'Write the catalog out in the legacy file layout'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "key" -d 'API keys: create, list, revoke, verify'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "session" -d 'Portal sessions: create, list, revoke, prune'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "usage" -d 'Record and report metered usage'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "quota" -d 'Check usage against limits, and enforce the storage limit'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "stats" -d 'Platform statistics for admins'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "plan" -d 'List and change plans and their quotas'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "server" -d 'Database servers that host tenants: add, list, show, test, update, remove'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "audit" -d 'List audit events, newest first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "completions" -d 'Print a shell completion script'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "create-customer" -d 'Same as \'customer create\''
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "list-customers" -d 'Same as \'customer list\''
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "create-site" -d 'Same as \'site create\''
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "list-sites" -d 'Same as \'site list\''
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and not __fish_seen_subcommand_from init migrate status config customer site db resolve doctor backup restore import export key session usage quota stats plan server audit completions create-customer list-customers create-site list-sites help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "get" -d 'Print one setting\'s value'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "set" -d 'Change a setting'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "unset" -d 'Remove a setting, so its default applies again'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "list" -d 'List every setting with its value and default'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from customer" -f -a "create" -d 'Create a customer and its own tenant database'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from customer" -f -a "list" -d 'List customers'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from customer" -f -a "show" -d 'Show a customer with usage against quota and its sites'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from customer" -f -a "update" -d 'Change a customer\'s details, plan, quota overrides or metadata'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from customer" -f -a "suspend" -d 'Suspend a customer (its keys stop working)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from customer" -f -a "reactivate" -d 'Make a suspended customer active again'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from customer" -f -a "delete" -d 'Soft-delete: stop sites, revoke keys and sessions, move the database to the trash'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from customer" -f -a "undelete" -d 'Reverse a soft delete'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from customer" -f -a "purge" -d 'Remove a deleted customer\'s database, sites, snapshots and keys for good'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from customer" -f -a "move" -d 'Move a customer\'s tenant database to another server or engine'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from site" -f -a "create" -d 'Create a site for a customer, within its plan\'s site limit'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from site" -f -a "list" -d 'List sites, streamed (use -o ndjson for very large listings)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from site" -f -a "show" -d 'Show one site with its config'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from site" -f -a "update" -d 'Change a site; the old config is kept as a manual snapshot first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from site" -f -a "delete" -d 'Delete a site with its deployments and snapshots'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from site" -f -a "deploy" -d 'Record a deployment of the site\'s current config and mark it deployed'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from site" -f -a "deployments" -d 'List a site\'s deployments, oldest first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from site" -f -a "rollback" -d 'Deploy the config of an earlier deployment again'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from site" -f -a "snapshot" -d 'Save a copy of the site\'s config'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from site" -f -a "snapshots" -d 'List a site\'s config snapshots, oldest first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from site" -f -a "restore" -d 'Put a snapshot\'s config back (the current one is kept as a pre-restore snapshot)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "migrate" -d 'Apply tenant migrations to every tenant (or those named), in parallel'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "rollback" -d 'Undo tenant migrations down to version N by their down scripts, in parallel'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "status" -d 'Per-tenant schema version, size and last migration, with a summary line first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "sql" -d 'Run one SQL statement, or a script with -f, on a tenant database (read-only unless --write)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "history" -d 'List the recorded \'db sql\' and \'db vacuum\' runs, newest first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "vacuum" -d 'Compact tenant databases (VACUUM, then ANALYZE) and report the bytes reclaimed'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "path" -d 'Print where a customer\'s database is: its file (for sqlite3), or on a server its role\'s URL without the password'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "url" -d 'Print the URL an application connects to a customer\'s database with'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from db" -f -a "rotate-password" -d 'Give server tenants\' login roles new passwords'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "list" -d 'List backup sets from their manifests (works without the catalog)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "show" -d 'Show one set\'s manifest'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "verify" -d 'Recompute checksums and quick_check every file (default: the newest set)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "prune" -d 'Remove sets outside the retention policy; never the newest set'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "create" -d 'Create an API key; its token is printed once'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "list" -d 'List API keys (never their secrets)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "revoke" -d 'Revoke an API key'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "verify" -d 'Check a token: exit 0 with its customer and scopes, exit 3 if not valid'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from session" -f -a "create" -d 'Open a portal session for a customer (as the portal does at login); the token is printed once'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from session" -f -a "list" -d 'List sessions (never their tokens)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from session" -f -a "revoke" -d 'Revoke a session, or every session of a customer'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from session" -f -a "prune" -d 'Delete expired sessions (for cron)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from usage" -f -a "record" -d 'Record metered usage'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from usage" -f -a "report" -d 'Usage per customer for a month, with storage measured now'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from quota" -f -a "check" -d 'Usage against limits; exit 5 if any customer is over'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from quota" -f -a "enforce" -d 'For cron: warn at 80 % and suspend at 100 % of the storage limit'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from plan" -f -a "list" -d 'List plans with their quotas and how many customers use each'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from plan" -f -a "set" -d 'Create a plan or change its quotas'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from server" -f -a "add" -d 'Register a PostgreSQL server that tenants can be placed on'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from server" -f -a "list" -d 'List the servers, the built-in \'local\' first'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from server" -f -a "show" -d 'Show one server (its password as ***)'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from server" -f -a "test" -d 'Connect to a server: reachability, latency, version, tenants, free capacity'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from server" -f -a "update" -d 'Change a server\'s login, capacity or status'
complete -c tenantctl -n "__fish_tenantctl_using_subcommand help; and __fish_seen_subcommand_from server" -f -a "remove" -d 'Forget a server that hosts no tenant (its databases stay on it)'
