
use builtin;
use str;

set edit:completion:arg-completer[tenantctl] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'tenantctl'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'tenantctl'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand init 'Create the home, the catalog and the starter tenant migrations'
            cand migrate 'Apply or list catalog migrations'
            cand status 'Show the state of the home at a glance'
            cand config 'Read and change catalog settings'
            cand customer 'Manage customers (tenants)'
            cand site 'Manage customers'' sites, deployments and config snapshots'
            cand db 'Tenant databases: migrate, status, SQL, path'
            cand resolve 'Which customer serves a hostname'
            cand doctor 'Check the catalog and every tenant database; --fix repairs what is safe'
            cand backup 'Take a backup set, or list, show, verify and prune sets'
            cand restore 'Put databases back from a backup set'
            cand import 'Import the legacy file-based site configs'
            cand export 'Write the catalog out in the legacy file layout'
            cand key 'API keys: create, list, revoke, verify'
            cand session 'Portal sessions: create, list, revoke, prune'
            cand usage 'Record and report metered usage'
            cand quota 'Check usage against limits, and enforce the storage limit'
            cand stats 'Platform statistics for admins'
            cand plan 'List and change plans and their quotas'
            cand server 'Database servers that host tenants: add, list, show, test, update, remove'
            cand audit 'List audit events, newest first'
            cand completions 'Print a shell completion script'
            cand create-customer 'Same as ''customer create'''
            cand list-customers 'Same as ''customer list'''
            cand create-site 'Same as ''site create'''
            cand list-sites 'Same as ''site list'''
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;init'= {
            cand --tenant-migrations 'Keep tenant migrations in DIR instead of HOME/tenant-migrations'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;migrate'= {
            cand --from-files 'Import legacy configs from DIR instead (same as ''tenantctl import DIR'')'
            cand --plan 'With --from-files: plan for customers whose files name none'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --dry-run 'Show what would be applied, change nothing'
            cand --status 'List applied and pending migrations with their checksums'
            cand --continue-on-error 'With --from-files: import the valid files even when some are invalid'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;status'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;config'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand get 'Print one setting''s value'
            cand set 'Change a setting'
            cand unset 'Remove a setting, so its default applies again'
            cand list 'List every setting with its value and default'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;config;get'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;config;set'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;config;unset'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;config;list'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;config;help'= {
            cand get 'Print one setting''s value'
            cand set 'Change a setting'
            cand unset 'Remove a setting, so its default applies again'
            cand list 'List every setting with its value and default'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;config;help;get'= {
        }
        &'tenantctl;config;help;set'= {
        }
        &'tenantctl;config;help;unset'= {
        }
        &'tenantctl;config;help;list'= {
        }
        &'tenantctl;config;help;help'= {
        }
        &'tenantctl;customer'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand create 'Create a customer and its own tenant database'
            cand add 'Create a customer and its own tenant database'
            cand list 'List customers'
            cand ls 'List customers'
            cand show 'Show a customer with usage against quota and its sites'
            cand update 'Change a customer''s details, plan, quota overrides or metadata'
            cand suspend 'Suspend a customer (its keys stop working)'
            cand reactivate 'Make a suspended customer active again'
            cand delete 'Soft-delete: stop sites, revoke keys and sessions, move the database to the trash'
            cand undelete 'Reverse a soft delete'
            cand purge 'Remove a deleted customer''s database, sites, snapshots and keys for good'
            cand move 'Move a customer''s tenant database to another server or engine'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;customer;create'= {
            cand --plan 'Plan [default: the default_plan setting, or starter]'
            cand --slug 'Slug (DNS label) [default: derived from the company or the email]'
            cand --meta 'Metadata entry key=value (value parsed as JSON when it can be); repeatable'
            cand --server 'Where its database goes: ''local'', a server name, or ''auto'' (the active server with the most free capacity) [default: the default_server setting, or local]'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;customer;add'= {
            cand --plan 'Plan [default: the default_plan setting, or starter]'
            cand --slug 'Slug (DNS label) [default: derived from the company or the email]'
            cand --meta 'Metadata entry key=value (value parsed as JSON when it can be); repeatable'
            cand --server 'Where its database goes: ''local'', a server name, or ''auto'' (the active server with the most free capacity) [default: the default_server setting, or local]'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;customer;list'= {
            cand --plan 'Only customers on this plan'
            cand --status 'Only customers in this status'
            cand --search 'Only customers whose slug, email, name or company contains TEXT'
            cand --limit 'Show at most N customers; 0 for all'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;customer;ls'= {
            cand --plan 'Only customers on this plan'
            cand --status 'Only customers in this status'
            cand --search 'Only customers whose slug, email, name or company contains TEXT'
            cand --limit 'Show at most N customers; 0 for all'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;customer;show'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;customer;update'= {
            cand --email 'New contact email'
            cand --name 'New contact name'
            cand --company 'New company name ('''' clears it)'
            cand --plan 'New plan; refused (exit 5) when it would put the customer over a quota'
            cand --max-sites 'Override the plan''s max sites (''none'' goes back to the plan''s)'
            cand --max-storage-mb 'Override the plan''s storage in MiB (''none'' goes back to the plan''s)'
            cand --max-bandwidth-gb 'Override the plan''s monthly bandwidth in GiB (''none'' goes back to the plan''s)'
            cand --max-api-calls 'Override the plan''s monthly API calls (''none'' goes back to the plan''s)'
            cand --meta 'Set metadata key=value (an empty value removes the key); repeatable'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --force 'Apply a change even when it puts the customer over a quota'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;customer;suspend'= {
            cand --reason 'Why, for the audit log and the customer record'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;customer;reactivate'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;customer;delete'= {
            cand --confirm 'The customer''s slug (or id), to confirm'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;customer;undelete'= {
            cand --from-backup 'Take the database from a backup set (default: the newest holding the customer)'
            cand --at 'With --from-backup: the newest set finished at or before TIME'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;customer;purge'= {
            cand --confirm 'The customer''s slug (or id), to confirm'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;customer;move'= {
            cand --to 'Where to: a server name, or ''local'' for the home''s SQLite folder'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --online 'Keep the tenant writable while its rows copy: logical replication from one PostgreSQL server to another; writes freeze only for the final catch-up'
            cand --dry-run 'Print the plan (tables, rows, size, method, freeze) and check every value converts, changing nothing'
            cand --finish 'Drop the old copy that a finished move kept'
            cand --abort 'Undo a move that has not switched the placement yet'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;customer;help'= {
            cand create 'Create a customer and its own tenant database'
            cand list 'List customers'
            cand show 'Show a customer with usage against quota and its sites'
            cand update 'Change a customer''s details, plan, quota overrides or metadata'
            cand suspend 'Suspend a customer (its keys stop working)'
            cand reactivate 'Make a suspended customer active again'
            cand delete 'Soft-delete: stop sites, revoke keys and sessions, move the database to the trash'
            cand undelete 'Reverse a soft delete'
            cand purge 'Remove a deleted customer''s database, sites, snapshots and keys for good'
            cand move 'Move a customer''s tenant database to another server or engine'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;customer;help;create'= {
        }
        &'tenantctl;customer;help;list'= {
        }
        &'tenantctl;customer;help;show'= {
        }
        &'tenantctl;customer;help;update'= {
        }
        &'tenantctl;customer;help;suspend'= {
        }
        &'tenantctl;customer;help;reactivate'= {
        }
        &'tenantctl;customer;help;delete'= {
        }
        &'tenantctl;customer;help;undelete'= {
        }
        &'tenantctl;customer;help;purge'= {
        }
        &'tenantctl;customer;help;move'= {
        }
        &'tenantctl;customer;help;help'= {
        }
        &'tenantctl;site'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand create 'Create a site for a customer, within its plan''s site limit'
            cand add 'Create a site for a customer, within its plan''s site limit'
            cand list 'List sites, streamed (use -o ndjson for very large listings)'
            cand ls 'List sites, streamed (use -o ndjson for very large listings)'
            cand show 'Show one site with its config'
            cand update 'Change a site; the old config is kept as a manual snapshot first'
            cand delete 'Delete a site with its deployments and snapshots'
            cand deploy 'Record a deployment of the site''s current config and mark it deployed'
            cand deployments 'List a site''s deployments, oldest first'
            cand rollback 'Deploy the config of an earlier deployment again'
            cand snapshot 'Save a copy of the site''s config'
            cand snapshots 'List a site''s config snapshots, oldest first'
            cand restore 'Put a snapshot''s config back (the current one is kept as a pre-restore snapshot)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;site;create'= {
            cand --domain 'Domain, unique across sites [default: <name>.<slug>.<platform_domain>]'
            cand --port 'Port, unique across sites (1-65535)'
            cand --business-type 'Kind of business, e.g. translation or shop'
            cand --config 'Config JSON object from FILE, or ''-'' for stdin'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;site;add'= {
            cand --domain 'Domain, unique across sites [default: <name>.<slug>.<platform_domain>]'
            cand --port 'Port, unique across sites (1-65535)'
            cand --business-type 'Kind of business, e.g. translation or shop'
            cand --config 'Config JSON object from FILE, or ''-'' for stdin'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;site;list'= {
            cand --status 'Only sites in this status'
            cand --domain 'Only sites whose domain contains TEXT'
            cand --limit 'Show at most N sites; 0 for all'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;site;ls'= {
            cand --status 'Only sites in this status'
            cand --domain 'Only sites whose domain contains TEXT'
            cand --limit 'Show at most N sites; 0 for all'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;site;show'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;site;update'= {
            cand --name 'New name'
            cand --domain 'New domain'
            cand --port 'New port (1-65535), or ''none'' to remove it'
            cand --status 'New status'
            cand --config 'Replace the config with a JSON object from FILE, or ''-'' for stdin'
            cand --set 'Set one config value by dotted path (value parsed as JSON, else a string); repeatable'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;site;delete'= {
            cand --confirm 'The site''s domain (or id), to confirm'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;site;deploy'= {
            cand --port 'Deploy on this port (1-65535) instead of the site''s'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;site;deployments'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;site;rollback'= {
            cand --to 'Deployment number to go back to [default: the one before the newest]'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;site;snapshot'= {
            cand --name 'A name for the snapshot'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;site;snapshots'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;site;restore'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;site;help'= {
            cand create 'Create a site for a customer, within its plan''s site limit'
            cand list 'List sites, streamed (use -o ndjson for very large listings)'
            cand show 'Show one site with its config'
            cand update 'Change a site; the old config is kept as a manual snapshot first'
            cand delete 'Delete a site with its deployments and snapshots'
            cand deploy 'Record a deployment of the site''s current config and mark it deployed'
            cand deployments 'List a site''s deployments, oldest first'
            cand rollback 'Deploy the config of an earlier deployment again'
            cand snapshot 'Save a copy of the site''s config'
            cand snapshots 'List a site''s config snapshots, oldest first'
            cand restore 'Put a snapshot''s config back (the current one is kept as a pre-restore snapshot)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;site;help;create'= {
        }
        &'tenantctl;site;help;list'= {
        }
        &'tenantctl;site;help;show'= {
        }
        &'tenantctl;site;help;update'= {
        }
        &'tenantctl;site;help;delete'= {
        }
        &'tenantctl;site;help;deploy'= {
        }
        &'tenantctl;site;help;deployments'= {
        }
        &'tenantctl;site;help;rollback'= {
        }
        &'tenantctl;site;help;snapshot'= {
        }
        &'tenantctl;site;help;snapshots'= {
        }
        &'tenantctl;site;help;restore'= {
        }
        &'tenantctl;site;help;help'= {
        }
        &'tenantctl;db'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand migrate 'Apply tenant migrations to every tenant (or those named), in parallel'
            cand rollback 'Undo tenant migrations down to version N by their down scripts, in parallel'
            cand status 'Per-tenant schema version, size and last migration, with a summary line first'
            cand sql 'Run one SQL statement, or a script with -f, on a tenant database (read-only unless --write)'
            cand history 'List the recorded ''db sql'' and ''db vacuum'' runs, newest first'
            cand vacuum 'Compact tenant databases (VACUUM, then ANALYZE) and report the bytes reclaimed'
            cand path 'Print where a customer''s database is: its file (for sqlite3), or on a server its role''s URL without the password'
            cand url 'Print the URL an application connects to a customer''s database with'
            cand rotate-password 'Give server tenants'' login roles new passwords'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;db;migrate'= {
            cand --target 'Migrate up to version N instead of the newest'
            cand --jobs 'Tenants migrated at once [default: 8 per CPU, since tenants wait on fsync, not the CPU]'
            cand --jobs-per-server 'Connections held at once on each database server (never more than it has free)'
            cand --canary 'Migrate N tenants first and stop if any of them fails'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --all 'Migrate every tenant that is not deleted (the default when no customer is named)'
            cand --dry-run 'Show what would be applied, change nothing'
            cand --continue-on-error 'Go on with the other tenants after a failure (exit 8 at the end)'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;db;rollback'= {
            cand --to 'The version to go back to: one that exists, below the newest (0 needs --confirm all-data)'
            cand --jobs 'Tenants rolled back at once [default: 8 per CPU]'
            cand --jobs-per-server 'Connections held at once on each database server (never more than it has free)'
            cand --canary 'Roll back N tenants first and stop if any of them fails'
            cand --confirm '''all-data'', required with --to 0, which drops every table the migrations made'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --all 'Roll back every tenant that is not deleted (the default when no customer is named)'
            cand --dry-run 'Show what would be undone, change nothing'
            cand --continue-on-error 'Go on with the other tenants after a failure (exit 8 at the end)'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;db;status'= {
            cand --server 'Only tenants on this server (''local'' for the SQLite files)'
            cand --jobs-per-server 'Connections held at once on each database server (never more than it has free)'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --behind 'Only tenants behind the newest migration'
            cand --failed 'Only tenants whose last migration failed'
            cand --check 'Also open every tenant database: quick_check and the version it really has'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;db;sql'= {
            cand -f 'Run the statements in FILE (''-'' for stdin) as one transaction'
            cand --file 'Run the statements in FILE (''-'' for stdin) as one transaction'
            cand --timeout 'Stop a statement that runs longer than this, e.g. 30s or 5m'
            cand --jobs-per-server 'Connections held at once on each database server (never more than it has free)'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --all 'Run the same read-only statement on every active tenant; its rows start with a tenant column'
            cand --write 'Allow the statement to change data'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;db;history'= {
            cand --since 'Only runs at or after TIME (RFC 3339, YYYY-MM-DD, or an age such as 24h or 7d)'
            cand --limit 'Show at most N runs; 0 for all'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --failed 'Only runs that failed'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;db;vacuum'= {
            cand --jobs 'Tenants compacted at once [default: 2 per CPU]'
            cand --jobs-per-server 'Connections held at once on each database server (never more than it has free)'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --all 'Compact every tenant database that is not deleted'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;db;path'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;db;url'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --reveal 'Put the tenant role''s password into the URL'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;db;rotate-password'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --all 'Every server tenant that is not deleted'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;db;help'= {
            cand migrate 'Apply tenant migrations to every tenant (or those named), in parallel'
            cand rollback 'Undo tenant migrations down to version N by their down scripts, in parallel'
            cand status 'Per-tenant schema version, size and last migration, with a summary line first'
            cand sql 'Run one SQL statement, or a script with -f, on a tenant database (read-only unless --write)'
            cand history 'List the recorded ''db sql'' and ''db vacuum'' runs, newest first'
            cand vacuum 'Compact tenant databases (VACUUM, then ANALYZE) and report the bytes reclaimed'
            cand path 'Print where a customer''s database is: its file (for sqlite3), or on a server its role''s URL without the password'
            cand url 'Print the URL an application connects to a customer''s database with'
            cand rotate-password 'Give server tenants'' login roles new passwords'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;db;help;migrate'= {
        }
        &'tenantctl;db;help;rollback'= {
        }
        &'tenantctl;db;help;status'= {
        }
        &'tenantctl;db;help;sql'= {
        }
        &'tenantctl;db;help;history'= {
        }
        &'tenantctl;db;help;vacuum'= {
        }
        &'tenantctl;db;help;path'= {
        }
        &'tenantctl;db;help;url'= {
        }
        &'tenantctl;db;help;rotate-password'= {
        }
        &'tenantctl;db;help;help'= {
        }
        &'tenantctl;resolve'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;doctor'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --fix 'Repair what is safe to repair (modes, recorded versions, crash leftovers)'
            cand --adopt 'With --fix: give each tenant database no customer owns its customer again (details from the newest backup that knew it)'
            cand --trash 'With --fix: move each tenant database no customer owns to the trash'
            cand --full 'Check the integrity of every tenant database, also those unchanged since their last clean check'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;backup'= {
            cand --customer 'Only these customers'' databases (slug, id or email); repeatable'
            cand --label 'A label stored in the manifest'
            cand --kind 'Why the set was taken'
            cand --jobs-per-server 'Dumps run at once on each database server (never more than it has connections free)'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --all 'The catalog and every tenant that is not deleted (the default)'
            cand --catalog 'Only the catalog'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'List backup sets from their manifests (works without the catalog)'
            cand show 'Show one set''s manifest'
            cand verify 'Recompute checksums and quick_check every file (default: the newest set)'
            cand prune 'Remove sets outside the retention policy; never the newest set'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;backup;list'= {
            cand --customer 'Only sets holding this customer (slug or id)'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;backup;show'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;backup;verify'= {
            cand --scratch-server 'With --deep, restore archives on this server instead of the one they came from'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --all 'Verify every set'
            cand --deep 'Restore every copy to check it, not only its checksum and structure'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;backup;prune'= {
            cand --keep-last 'Keep the N newest sets [default: the backup_keep_last setting]'
            cand --keep-daily 'Keep the newest set of each of the last N days [default: backup_keep_daily]'
            cand --keep-weekly 'Keep the newest set of each of the last N weeks [default: backup_keep_weekly]'
            cand --keep-monthly 'Keep the newest set of each of the last N months [default: backup_keep_monthly]'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --dry-run 'Show what would be removed, remove nothing'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;backup;help'= {
            cand list 'List backup sets from their manifests (works without the catalog)'
            cand show 'Show one set''s manifest'
            cand verify 'Recompute checksums and quick_check every file (default: the newest set)'
            cand prune 'Remove sets outside the retention policy; never the newest set'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;backup;help;list'= {
        }
        &'tenantctl;backup;help;show'= {
        }
        &'tenantctl;backup;help;verify'= {
        }
        &'tenantctl;backup;help;prune'= {
        }
        &'tenantctl;backup;help;help'= {
        }
        &'tenantctl;restore'= {
            cand --at 'Use the newest set finished at or before TIME, to the microsecond (RFC 3339, date, or age such as 6h)'
            cand --customer 'Restore these customers'' databases; repeatable (a deleted customer comes back with ''customer undelete CUSTOMER --from-backup'')'
            cand --confirm '''catalog'' or ''everything'', to confirm'
            cand --into 'Copy the one --customer''s data into this other existing customer'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --catalog 'Restore the catalog (needs --confirm catalog)'
            cand --everything 'Restore the catalog and every tenant in the set (needs --confirm everything)'
            cand --if-missing 'Only restore tenants whose database file is absent'
            cand --dry-run 'Show the set that would be used, what it would replace or create and what the pre-restore set would save first; change nothing (needs no --confirm)'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;import'= {
            cand --plan 'Plan for customers whose files name none [default: the default_plan setting]'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --dry-run 'Report what would happen, write nothing'
            cand --continue-on-error 'Import the valid files even when some are invalid (exit 8)'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;export'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --force 'Replace a folder that is not empty: a fresh tree is written beside it and swapped in'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;key'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand create 'Create an API key; its token is printed once'
            cand list 'List API keys (never their secrets)'
            cand revoke 'Revoke an API key'
            cand verify 'Check a token: exit 0 with its customer and scopes, exit 3 if not valid'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;key;create'= {
            cand --name 'What the key is for'
            cand --scope 'A scope such as sites:read or deploy (lowercase; ''config set key_scopes'' may restrict them); repeatable [default: sites:read]'
            cand --expires-in 'Expire after this long, e.g. 90d or 12h'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;key;list'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;key;revoke'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;key;verify'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;key;help'= {
            cand create 'Create an API key; its token is printed once'
            cand list 'List API keys (never their secrets)'
            cand revoke 'Revoke an API key'
            cand verify 'Check a token: exit 0 with its customer and scopes, exit 3 if not valid'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;key;help;create'= {
        }
        &'tenantctl;key;help;list'= {
        }
        &'tenantctl;key;help;revoke'= {
        }
        &'tenantctl;key;help;verify'= {
        }
        &'tenantctl;key;help;help'= {
        }
        &'tenantctl;session'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand create 'Open a portal session for a customer (as the portal does at login); the token is printed once'
            cand list 'List sessions (never their tokens)'
            cand revoke 'Revoke a session, or every session of a customer'
            cand prune 'Delete expired sessions (for cron)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;session;create'= {
            cand --device 'The device or browser'
            cand --ttl 'How long the session lives, e.g. 7d or 12h'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;session;list'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --active 'Only sessions that are neither revoked, expired nor blocked'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;session;revoke'= {
            cand --customer 'Revoke this customer''s sessions (with --all)'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --all 'Every session of --customer'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;session;prune'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;session;help'= {
            cand create 'Open a portal session for a customer (as the portal does at login); the token is printed once'
            cand list 'List sessions (never their tokens)'
            cand revoke 'Revoke a session, or every session of a customer'
            cand prune 'Delete expired sessions (for cron)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;session;help;create'= {
        }
        &'tenantctl;session;help;list'= {
        }
        &'tenantctl;session;help;revoke'= {
        }
        &'tenantctl;session;help;prune'= {
        }
        &'tenantctl;session;help;help'= {
        }
        &'tenantctl;usage'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand record 'Record metered usage'
            cand report 'Usage per customer for a month, with storage measured now'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;usage;record'= {
            cand --at 'When it was used [default: now]; sets the month'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;usage;report'= {
            cand --month 'YYYY-MM [default: this month]'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;usage;help'= {
            cand record 'Record metered usage'
            cand report 'Usage per customer for a month, with storage measured now'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;usage;help;record'= {
        }
        &'tenantctl;usage;help;report'= {
        }
        &'tenantctl;usage;help;help'= {
        }
        &'tenantctl;quota'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand check 'Usage against limits; exit 5 if any customer is over'
            cand enforce 'For cron: warn at 80 % and suspend at 100 % of the storage limit'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;quota;check'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;quota;enforce'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --dry-run 'Say what would be done, do nothing'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;quota;help'= {
            cand check 'Usage against limits; exit 5 if any customer is over'
            cand enforce 'For cron: warn at 80 % and suspend at 100 % of the storage limit'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;quota;help;check'= {
        }
        &'tenantctl;quota;help;enforce'= {
        }
        &'tenantctl;quota;help;help'= {
        }
        &'tenantctl;stats'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;plan'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand list 'List plans with their quotas and how many customers use each'
            cand set 'Create a plan or change its quotas'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;plan;list'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;plan;set'= {
            cand --max-sites 'Sites a customer may have'
            cand --max-storage-mb 'Tenant database size in MiB'
            cand --max-bandwidth-gb 'Bandwidth per month in GiB'
            cand --max-api-calls 'API calls per month'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --force 'Apply a change even when it puts customers on the plan over a quota'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;plan;help'= {
            cand list 'List plans with their quotas and how many customers use each'
            cand set 'Create a plan or change its quotas'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;plan;help;list'= {
        }
        &'tenantctl;plan;help;set'= {
        }
        &'tenantctl;plan;help;help'= {
        }
        &'tenantctl;server'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
            cand add 'Register a PostgreSQL server that tenants can be placed on'
            cand list 'List the servers, the built-in ''local'' first'
            cand show 'Show one server (its password as ***)'
            cand test 'Connect to a server: reachability, latency, version, tenants, free capacity'
            cand update 'Change a server''s login, capacity or status'
            cand remove 'Forget a server that hosts no tenant (its databases stay on it)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;server;add'= {
            cand --url 'Admin login: postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE'
            cand --mode 'One database per tenant, or one schema per tenant in the URL''s database'
            cand --capacity 'Most tenants the server may hold (default: no limit)'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --password-stdin 'Read the login''s password from the first line of stdin'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;server;list'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;server;show'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;server;test'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;server;update'= {
            cand --url 'A new admin login URL (checked against the server before it is saved)'
            cand --capacity 'Most tenants the server may hold'
            cand --status '''draining'' keeps its tenants but places no new ones on it'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --password-stdin 'Read a new password for the login from the first line of stdin'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;server;remove'= {
            cand --confirm 'The server''s name, to confirm'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;server;help'= {
            cand add 'Register a PostgreSQL server that tenants can be placed on'
            cand list 'List the servers, the built-in ''local'' first'
            cand show 'Show one server (its password as ***)'
            cand test 'Connect to a server: reachability, latency, version, tenants, free capacity'
            cand update 'Change a server''s login, capacity or status'
            cand remove 'Forget a server that hosts no tenant (its databases stay on it)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;server;help;add'= {
        }
        &'tenantctl;server;help;list'= {
        }
        &'tenantctl;server;help;show'= {
        }
        &'tenantctl;server;help;test'= {
        }
        &'tenantctl;server;help;update'= {
        }
        &'tenantctl;server;help;remove'= {
        }
        &'tenantctl;server;help;help'= {
        }
        &'tenantctl;audit'= {
            cand --customer 'Only events of this customer (slug, id or email)'
            cand --action 'Only this action (customer.create), or actions starting with a prefix ending in ''.'''
            cand --since 'Only events at or after TIME (RFC 3339, YYYY-MM-DD, or an age such as 24h or 7d)'
            cand --limit 'Show at most N events; 0 for all'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;completions'= {
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;create-customer'= {
            cand --plan 'Plan [default: the default_plan setting, or starter]'
            cand --slug 'Slug (DNS label) [default: derived from the company or the email]'
            cand --meta 'Metadata entry key=value (value parsed as JSON when it can be); repeatable'
            cand --server 'Where its database goes: ''local'', a server name, or ''auto'' (the active server with the most free capacity) [default: the default_server setting, or local]'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;list-customers'= {
            cand --plan 'Only customers on this plan'
            cand --status 'Only customers in this status'
            cand --search 'Only customers whose slug, email, name or company contains TEXT'
            cand --limit 'Show at most N customers; 0 for all'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;create-site'= {
            cand --domain 'Domain, unique across sites [default: <name>.<slug>.<platform_domain>]'
            cand --port 'Port, unique across sites (1-65535)'
            cand --business-type 'Kind of business, e.g. translation or shop'
            cand --config 'Config JSON object from FILE, or ''-'' for stdin'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;list-sites'= {
            cand --status 'Only sites in this status'
            cand --domain 'Only sites whose domain contains TEXT'
            cand --limit 'Show at most N sites; 0 for all'
            cand --home 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]'
            cand --backup-dir 'Where backup sets live [default: HOME/backups]'
            cand -o 'Output format [default: table]'
            cand --output 'Output format [default: table]'
            cand --actor 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]'
            cand --color 'When to colour messages (NO_COLOR is honoured with auto)'
            cand --lock-timeout 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m'
            cand --json 'Same as --output json'
            cand -q 'Print only data and errors'
            cand --quiet 'Print only data and errors'
            cand -v 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --verbose 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time'
            cand --no-progress 'Never draw progress bars'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'tenantctl;help'= {
            cand init 'Create the home, the catalog and the starter tenant migrations'
            cand migrate 'Apply or list catalog migrations'
            cand status 'Show the state of the home at a glance'
            cand config 'Read and change catalog settings'
            cand customer 'Manage customers (tenants)'
            cand site 'Manage customers'' sites, deployments and config snapshots'
            cand db 'Tenant databases: migrate, status, SQL, path'
            cand resolve 'Which customer serves a hostname'
            cand doctor 'Check the catalog and every tenant database; --fix repairs what is safe'
            cand backup 'Take a backup set, or list, show, verify and prune sets'
            cand restore 'Put databases back from a backup set'
            cand import 'Import the legacy file-based site configs'
            cand export 'Write the catalog out in the legacy file layout'
            cand key 'API keys: create, list, revoke, verify'
            cand session 'Portal sessions: create, list, revoke, prune'
            cand usage 'Record and report metered usage'
            cand quota 'Check usage against limits, and enforce the storage limit'
            cand stats 'Platform statistics for admins'
            cand plan 'List and change plans and their quotas'
            cand server 'Database servers that host tenants: add, list, show, test, update, remove'
            cand audit 'List audit events, newest first'
            cand completions 'Print a shell completion script'
            cand create-customer 'Same as ''customer create'''
            cand list-customers 'Same as ''customer list'''
            cand create-site 'Same as ''site create'''
            cand list-sites 'Same as ''site list'''
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'tenantctl;help;init'= {
        }
        &'tenantctl;help;migrate'= {
        }
        &'tenantctl;help;status'= {
        }
        &'tenantctl;help;config'= {
            cand get 'Print one setting''s value'
            cand set 'Change a setting'
            cand unset 'Remove a setting, so its default applies again'
            cand list 'List every setting with its value and default'
        }
        &'tenantctl;help;config;get'= {
        }
        &'tenantctl;help;config;set'= {
        }
        &'tenantctl;help;config;unset'= {
        }
        &'tenantctl;help;config;list'= {
        }
        &'tenantctl;help;customer'= {
            cand create 'Create a customer and its own tenant database'
            cand list 'List customers'
            cand show 'Show a customer with usage against quota and its sites'
            cand update 'Change a customer''s details, plan, quota overrides or metadata'
            cand suspend 'Suspend a customer (its keys stop working)'
            cand reactivate 'Make a suspended customer active again'
            cand delete 'Soft-delete: stop sites, revoke keys and sessions, move the database to the trash'
            cand undelete 'Reverse a soft delete'
            cand purge 'Remove a deleted customer''s database, sites, snapshots and keys for good'
            cand move 'Move a customer''s tenant database to another server or engine'
        }
        &'tenantctl;help;customer;create'= {
        }
        &'tenantctl;help;customer;list'= {
        }
        &'tenantctl;help;customer;show'= {
        }
        &'tenantctl;help;customer;update'= {
        }
        &'tenantctl;help;customer;suspend'= {
        }
        &'tenantctl;help;customer;reactivate'= {
        }
        &'tenantctl;help;customer;delete'= {
        }
        &'tenantctl;help;customer;undelete'= {
        }
        &'tenantctl;help;customer;purge'= {
        }
        &'tenantctl;help;customer;move'= {
        }
        &'tenantctl;help;site'= {
            cand create 'Create a site for a customer, within its plan''s site limit'
            cand list 'List sites, streamed (use -o ndjson for very large listings)'
            cand show 'Show one site with its config'
            cand update 'Change a site; the old config is kept as a manual snapshot first'
            cand delete 'Delete a site with its deployments and snapshots'
            cand deploy 'Record a deployment of the site''s current config and mark it deployed'
            cand deployments 'List a site''s deployments, oldest first'
            cand rollback 'Deploy the config of an earlier deployment again'
            cand snapshot 'Save a copy of the site''s config'
            cand snapshots 'List a site''s config snapshots, oldest first'
            cand restore 'Put a snapshot''s config back (the current one is kept as a pre-restore snapshot)'
        }
        &'tenantctl;help;site;create'= {
        }
        &'tenantctl;help;site;list'= {
        }
        &'tenantctl;help;site;show'= {
        }
        &'tenantctl;help;site;update'= {
        }
        &'tenantctl;help;site;delete'= {
        }
        &'tenantctl;help;site;deploy'= {
        }
        &'tenantctl;help;site;deployments'= {
        }
        &'tenantctl;help;site;rollback'= {
        }
        &'tenantctl;help;site;snapshot'= {
        }
        &'tenantctl;help;site;snapshots'= {
        }
        &'tenantctl;help;site;restore'= {
        }
        &'tenantctl;help;db'= {
            cand migrate 'Apply tenant migrations to every tenant (or those named), in parallel'
            cand rollback 'Undo tenant migrations down to version N by their down scripts, in parallel'
            cand status 'Per-tenant schema version, size and last migration, with a summary line first'
            cand sql 'Run one SQL statement, or a script with -f, on a tenant database (read-only unless --write)'
            cand history 'List the recorded ''db sql'' and ''db vacuum'' runs, newest first'
            cand vacuum 'Compact tenant databases (VACUUM, then ANALYZE) and report the bytes reclaimed'
            cand path 'Print where a customer''s database is: its file (for sqlite3), or on a server its role''s URL without the password'
            cand url 'Print the URL an application connects to a customer''s database with'
            cand rotate-password 'Give server tenants'' login roles new passwords'
        }
        &'tenantctl;help;db;migrate'= {
        }
        &'tenantctl;help;db;rollback'= {
        }
        &'tenantctl;help;db;status'= {
        }
        &'tenantctl;help;db;sql'= {
        }
        &'tenantctl;help;db;history'= {
        }
        &'tenantctl;help;db;vacuum'= {
        }
        &'tenantctl;help;db;path'= {
        }
        &'tenantctl;help;db;url'= {
        }
        &'tenantctl;help;db;rotate-password'= {
        }
        &'tenantctl;help;resolve'= {
        }
        &'tenantctl;help;doctor'= {
        }
        &'tenantctl;help;backup'= {
            cand list 'List backup sets from their manifests (works without the catalog)'
            cand show 'Show one set''s manifest'
            cand verify 'Recompute checksums and quick_check every file (default: the newest set)'
            cand prune 'Remove sets outside the retention policy; never the newest set'
        }
        &'tenantctl;help;backup;list'= {
        }
        &'tenantctl;help;backup;show'= {
        }
        &'tenantctl;help;backup;verify'= {
        }
        &'tenantctl;help;backup;prune'= {
        }
        &'tenantctl;help;restore'= {
        }
        &'tenantctl;help;import'= {
        }
        &'tenantctl;help;export'= {
        }
        &'tenantctl;help;key'= {
            cand create 'Create an API key; its token is printed once'
            cand list 'List API keys (never their secrets)'
            cand revoke 'Revoke an API key'
            cand verify 'Check a token: exit 0 with its customer and scopes, exit 3 if not valid'
        }
        &'tenantctl;help;key;create'= {
        }
        &'tenantctl;help;key;list'= {
        }
        &'tenantctl;help;key;revoke'= {
        }
        &'tenantctl;help;key;verify'= {
        }
        &'tenantctl;help;session'= {
            cand create 'Open a portal session for a customer (as the portal does at login); the token is printed once'
            cand list 'List sessions (never their tokens)'
            cand revoke 'Revoke a session, or every session of a customer'
            cand prune 'Delete expired sessions (for cron)'
        }
        &'tenantctl;help;session;create'= {
        }
        &'tenantctl;help;session;list'= {
        }
        &'tenantctl;help;session;revoke'= {
        }
        &'tenantctl;help;session;prune'= {
        }
        &'tenantctl;help;usage'= {
            cand record 'Record metered usage'
            cand report 'Usage per customer for a month, with storage measured now'
        }
        &'tenantctl;help;usage;record'= {
        }
        &'tenantctl;help;usage;report'= {
        }
        &'tenantctl;help;quota'= {
            cand check 'Usage against limits; exit 5 if any customer is over'
            cand enforce 'For cron: warn at 80 % and suspend at 100 % of the storage limit'
        }
        &'tenantctl;help;quota;check'= {
        }
        &'tenantctl;help;quota;enforce'= {
        }
        &'tenantctl;help;stats'= {
        }
        &'tenantctl;help;plan'= {
            cand list 'List plans with their quotas and how many customers use each'
            cand set 'Create a plan or change its quotas'
        }
        &'tenantctl;help;plan;list'= {
        }
        &'tenantctl;help;plan;set'= {
        }
        &'tenantctl;help;server'= {
            cand add 'Register a PostgreSQL server that tenants can be placed on'
            cand list 'List the servers, the built-in ''local'' first'
            cand show 'Show one server (its password as ***)'
            cand test 'Connect to a server: reachability, latency, version, tenants, free capacity'
            cand update 'Change a server''s login, capacity or status'
            cand remove 'Forget a server that hosts no tenant (its databases stay on it)'
        }
        &'tenantctl;help;server;add'= {
        }
        &'tenantctl;help;server;list'= {
        }
        &'tenantctl;help;server;show'= {
        }
        &'tenantctl;help;server;test'= {
        }
        &'tenantctl;help;server;update'= {
        }
        &'tenantctl;help;server;remove'= {
        }
        &'tenantctl;help;audit'= {
        }
        &'tenantctl;help;completions'= {
        }
        &'tenantctl;help;create-customer'= {
        }
        &'tenantctl;help;list-customers'= {
        }
        &'tenantctl;help;create-site'= {
        }
        &'tenantctl;help;list-sites'= {
        }
        &'tenantctl;help;help'= {
        }
    ]
    $completions[$command]
}
