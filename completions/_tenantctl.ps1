
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'tenantctl' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'tenantctl'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'tenantctl' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Create the home, the catalog and the starter tenant migrations')
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Apply or list catalog migrations')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the state of the home at a glance')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Read and change catalog settings')
            [CompletionResult]::new('customer', 'customer', [CompletionResultType]::ParameterValue, 'Manage customers (tenants)')
            [CompletionResult]::new('site', 'site', [CompletionResultType]::ParameterValue, 'Manage customers'' sites, deployments and config snapshots')
            [CompletionResult]::new('db', 'db', [CompletionResultType]::ParameterValue, 'Tenant databases: migrate, status, SQL, path')
            [CompletionResult]::new('resolve', 'resolve', [CompletionResultType]::ParameterValue, 'Which customer serves a hostname')
            [CompletionResult]::new('doctor', 'doctor', [CompletionResultType]::ParameterValue, 'Check the catalog and every tenant database; --fix repairs what is safe')
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Take a backup set, or list, show, verify and prune sets')
            [CompletionResult]::new('restore', 'restore', [CompletionResultType]::ParameterValue, 'Put databases back from a backup set')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Import the legacy file-based site configs')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write the catalog out in the legacy file layout')
            [CompletionResult]::new('key', 'key', [CompletionResultType]::ParameterValue, 'API keys: create, list, revoke, verify')
            [CompletionResult]::new('session', 'session', [CompletionResultType]::ParameterValue, 'Portal sessions: create, list, revoke, prune')
            [CompletionResult]::new('usage', 'usage', [CompletionResultType]::ParameterValue, 'Record and report metered usage')
            [CompletionResult]::new('quota', 'quota', [CompletionResultType]::ParameterValue, 'Check usage against limits, and enforce the storage limit')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Platform statistics for admins')
            [CompletionResult]::new('plan', 'plan', [CompletionResultType]::ParameterValue, 'List and change plans and their quotas')
            [CompletionResult]::new('server', 'server', [CompletionResultType]::ParameterValue, 'Database servers that host tenants: add, list, show, test, update, remove')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'List audit events, newest first')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('create-customer', 'create-customer', [CompletionResultType]::ParameterValue, 'Same as ''customer create''')
            [CompletionResult]::new('list-customers', 'list-customers', [CompletionResultType]::ParameterValue, 'Same as ''customer list''')
            [CompletionResult]::new('create-site', 'create-site', [CompletionResultType]::ParameterValue, 'Same as ''site create''')
            [CompletionResult]::new('list-sites', 'list-sites', [CompletionResultType]::ParameterValue, 'Same as ''site list''')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;init' {
            [CompletionResult]::new('--tenant-migrations', '--tenant-migrations', [CompletionResultType]::ParameterName, 'Keep tenant migrations in DIR instead of HOME/tenant-migrations')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;migrate' {
            [CompletionResult]::new('--from-files', '--from-files', [CompletionResultType]::ParameterName, 'Import legacy configs from DIR instead (same as ''tenantctl import DIR'')')
            [CompletionResult]::new('--plan', '--plan', [CompletionResultType]::ParameterName, 'With --from-files: plan for customers whose files name none')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show what would be applied, change nothing')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'List applied and pending migrations with their checksums')
            [CompletionResult]::new('--continue-on-error', '--continue-on-error', [CompletionResultType]::ParameterName, 'With --from-files: import the valid files even when some are invalid')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;status' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;config' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('get', 'get', [CompletionResultType]::ParameterValue, 'Print one setting''s value')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Change a setting')
            [CompletionResult]::new('unset', 'unset', [CompletionResultType]::ParameterValue, 'Remove a setting, so its default applies again')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List every setting with its value and default')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;config;get' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;config;set' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;config;unset' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;config;list' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;config;help' {
            [CompletionResult]::new('get', 'get', [CompletionResultType]::ParameterValue, 'Print one setting''s value')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Change a setting')
            [CompletionResult]::new('unset', 'unset', [CompletionResultType]::ParameterValue, 'Remove a setting, so its default applies again')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List every setting with its value and default')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;config;help;get' {
            break
        }
        'tenantctl;config;help;set' {
            break
        }
        'tenantctl;config;help;unset' {
            break
        }
        'tenantctl;config;help;list' {
            break
        }
        'tenantctl;config;help;help' {
            break
        }
        'tenantctl;customer' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a customer and its own tenant database')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Create a customer and its own tenant database')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List customers')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List customers')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a customer with usage against quota and its sites')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a customer''s details, plan, quota overrides or metadata')
            [CompletionResult]::new('suspend', 'suspend', [CompletionResultType]::ParameterValue, 'Suspend a customer (its keys stop working)')
            [CompletionResult]::new('reactivate', 'reactivate', [CompletionResultType]::ParameterValue, 'Make a suspended customer active again')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Soft-delete: stop sites, revoke keys and sessions, move the database to the trash')
            [CompletionResult]::new('undelete', 'undelete', [CompletionResultType]::ParameterValue, 'Reverse a soft delete')
            [CompletionResult]::new('purge', 'purge', [CompletionResultType]::ParameterValue, 'Remove a deleted customer''s database, sites, snapshots and keys for good')
            [CompletionResult]::new('move', 'move', [CompletionResultType]::ParameterValue, 'Move a customer''s tenant database to another server or engine')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;customer;create' {
            [CompletionResult]::new('--plan', '--plan', [CompletionResultType]::ParameterName, 'Plan [default: the default_plan setting, or starter]')
            [CompletionResult]::new('--slug', '--slug', [CompletionResultType]::ParameterName, 'Slug (DNS label) [default: derived from the company or the email]')
            [CompletionResult]::new('--meta', '--meta', [CompletionResultType]::ParameterName, 'Metadata entry key=value (value parsed as JSON when it can be); repeatable')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Where its database goes: ''local'', a server name, or ''auto'' (the active server with the most free capacity) [default: the default_server setting, or local]')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;customer;add' {
            [CompletionResult]::new('--plan', '--plan', [CompletionResultType]::ParameterName, 'Plan [default: the default_plan setting, or starter]')
            [CompletionResult]::new('--slug', '--slug', [CompletionResultType]::ParameterName, 'Slug (DNS label) [default: derived from the company or the email]')
            [CompletionResult]::new('--meta', '--meta', [CompletionResultType]::ParameterName, 'Metadata entry key=value (value parsed as JSON when it can be); repeatable')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Where its database goes: ''local'', a server name, or ''auto'' (the active server with the most free capacity) [default: the default_server setting, or local]')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;customer;list' {
            [CompletionResult]::new('--plan', '--plan', [CompletionResultType]::ParameterName, 'Only customers on this plan')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'Only customers in this status')
            [CompletionResult]::new('--search', '--search', [CompletionResultType]::ParameterName, 'Only customers whose slug, email, name or company contains TEXT')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Show at most N customers; 0 for all')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;customer;ls' {
            [CompletionResult]::new('--plan', '--plan', [CompletionResultType]::ParameterName, 'Only customers on this plan')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'Only customers in this status')
            [CompletionResult]::new('--search', '--search', [CompletionResultType]::ParameterName, 'Only customers whose slug, email, name or company contains TEXT')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Show at most N customers; 0 for all')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;customer;show' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;customer;update' {
            [CompletionResult]::new('--email', '--email', [CompletionResultType]::ParameterName, 'New contact email')
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'New contact name')
            [CompletionResult]::new('--company', '--company', [CompletionResultType]::ParameterName, 'New company name ('''' clears it)')
            [CompletionResult]::new('--plan', '--plan', [CompletionResultType]::ParameterName, 'New plan; refused (exit 5) when it would put the customer over a quota')
            [CompletionResult]::new('--max-sites', '--max-sites', [CompletionResultType]::ParameterName, 'Override the plan''s max sites (''none'' goes back to the plan''s)')
            [CompletionResult]::new('--max-storage-mb', '--max-storage-mb', [CompletionResultType]::ParameterName, 'Override the plan''s storage in MiB (''none'' goes back to the plan''s)')
            [CompletionResult]::new('--max-bandwidth-gb', '--max-bandwidth-gb', [CompletionResultType]::ParameterName, 'Override the plan''s monthly bandwidth in GiB (''none'' goes back to the plan''s)')
            [CompletionResult]::new('--max-api-calls', '--max-api-calls', [CompletionResultType]::ParameterName, 'Override the plan''s monthly API calls (''none'' goes back to the plan''s)')
            [CompletionResult]::new('--meta', '--meta', [CompletionResultType]::ParameterName, 'Set metadata key=value (an empty value removes the key); repeatable')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Apply a change even when it puts the customer over a quota')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;customer;suspend' {
            [CompletionResult]::new('--reason', '--reason', [CompletionResultType]::ParameterName, 'Why, for the audit log and the customer record')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;customer;reactivate' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;customer;delete' {
            [CompletionResult]::new('--confirm', '--confirm', [CompletionResultType]::ParameterName, 'The customer''s slug (or id), to confirm')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;customer;undelete' {
            [CompletionResult]::new('--from-backup', '--from-backup', [CompletionResultType]::ParameterName, 'Take the database from a backup set (default: the newest holding the customer)')
            [CompletionResult]::new('--at', '--at', [CompletionResultType]::ParameterName, 'With --from-backup: the newest set finished at or before TIME')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;customer;purge' {
            [CompletionResult]::new('--confirm', '--confirm', [CompletionResultType]::ParameterName, 'The customer''s slug (or id), to confirm')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;customer;move' {
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'Where to: a server name, or ''local'' for the home''s SQLite folder')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--online', '--online', [CompletionResultType]::ParameterName, 'Keep the tenant writable while its rows copy: logical replication from one PostgreSQL server to another; writes freeze only for the final catch-up')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print the plan (tables, rows, size, method, freeze) and check every value converts, changing nothing')
            [CompletionResult]::new('--finish', '--finish', [CompletionResultType]::ParameterName, 'Drop the old copy that a finished move kept')
            [CompletionResult]::new('--abort', '--abort', [CompletionResultType]::ParameterName, 'Undo a move that has not switched the placement yet')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;customer;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a customer and its own tenant database')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List customers')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a customer with usage against quota and its sites')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a customer''s details, plan, quota overrides or metadata')
            [CompletionResult]::new('suspend', 'suspend', [CompletionResultType]::ParameterValue, 'Suspend a customer (its keys stop working)')
            [CompletionResult]::new('reactivate', 'reactivate', [CompletionResultType]::ParameterValue, 'Make a suspended customer active again')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Soft-delete: stop sites, revoke keys and sessions, move the database to the trash')
            [CompletionResult]::new('undelete', 'undelete', [CompletionResultType]::ParameterValue, 'Reverse a soft delete')
            [CompletionResult]::new('purge', 'purge', [CompletionResultType]::ParameterValue, 'Remove a deleted customer''s database, sites, snapshots and keys for good')
            [CompletionResult]::new('move', 'move', [CompletionResultType]::ParameterValue, 'Move a customer''s tenant database to another server or engine')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;customer;help;create' {
            break
        }
        'tenantctl;customer;help;list' {
            break
        }
        'tenantctl;customer;help;show' {
            break
        }
        'tenantctl;customer;help;update' {
            break
        }
        'tenantctl;customer;help;suspend' {
            break
        }
        'tenantctl;customer;help;reactivate' {
            break
        }
        'tenantctl;customer;help;delete' {
            break
        }
        'tenantctl;customer;help;undelete' {
            break
        }
        'tenantctl;customer;help;purge' {
            break
        }
        'tenantctl;customer;help;move' {
            break
        }
        'tenantctl;customer;help;help' {
            break
        }
        'tenantctl;site' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a site for a customer, within its plan''s site limit')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Create a site for a customer, within its plan''s site limit')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List sites, streamed (use -o ndjson for very large listings)')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List sites, streamed (use -o ndjson for very large listings)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one site with its config')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a site; the old config is kept as a manual snapshot first')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a site with its deployments and snapshots')
            [CompletionResult]::new('deploy', 'deploy', [CompletionResultType]::ParameterValue, 'Record a deployment of the site''s current config and mark it deployed')
            [CompletionResult]::new('deployments', 'deployments', [CompletionResultType]::ParameterValue, 'List a site''s deployments, oldest first')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Deploy the config of an earlier deployment again')
            [CompletionResult]::new('snapshot', 'snapshot', [CompletionResultType]::ParameterValue, 'Save a copy of the site''s config')
            [CompletionResult]::new('snapshots', 'snapshots', [CompletionResultType]::ParameterValue, 'List a site''s config snapshots, oldest first')
            [CompletionResult]::new('restore', 'restore', [CompletionResultType]::ParameterValue, 'Put a snapshot''s config back (the current one is kept as a pre-restore snapshot)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;site;create' {
            [CompletionResult]::new('--domain', '--domain', [CompletionResultType]::ParameterName, 'Domain, unique across sites [default: <name>.<slug>.<platform_domain>]')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Port, unique across sites (1-65535)')
            [CompletionResult]::new('--business-type', '--business-type', [CompletionResultType]::ParameterName, 'Kind of business, e.g. translation or shop')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config JSON object from FILE, or ''-'' for stdin')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;site;add' {
            [CompletionResult]::new('--domain', '--domain', [CompletionResultType]::ParameterName, 'Domain, unique across sites [default: <name>.<slug>.<platform_domain>]')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Port, unique across sites (1-65535)')
            [CompletionResult]::new('--business-type', '--business-type', [CompletionResultType]::ParameterName, 'Kind of business, e.g. translation or shop')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config JSON object from FILE, or ''-'' for stdin')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;site;list' {
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'Only sites in this status')
            [CompletionResult]::new('--domain', '--domain', [CompletionResultType]::ParameterName, 'Only sites whose domain contains TEXT')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Show at most N sites; 0 for all')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;site;ls' {
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'Only sites in this status')
            [CompletionResult]::new('--domain', '--domain', [CompletionResultType]::ParameterName, 'Only sites whose domain contains TEXT')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Show at most N sites; 0 for all')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;site;show' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;site;update' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'New name')
            [CompletionResult]::new('--domain', '--domain', [CompletionResultType]::ParameterName, 'New domain')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'New port (1-65535), or ''none'' to remove it')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'New status')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Replace the config with a JSON object from FILE, or ''-'' for stdin')
            [CompletionResult]::new('--set', '--set', [CompletionResultType]::ParameterName, 'Set one config value by dotted path (value parsed as JSON, else a string); repeatable')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;site;delete' {
            [CompletionResult]::new('--confirm', '--confirm', [CompletionResultType]::ParameterName, 'The site''s domain (or id), to confirm')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;site;deploy' {
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Deploy on this port (1-65535) instead of the site''s')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;site;deployments' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;site;rollback' {
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'Deployment number to go back to [default: the one before the newest]')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;site;snapshot' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'A name for the snapshot')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;site;snapshots' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;site;restore' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;site;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a site for a customer, within its plan''s site limit')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List sites, streamed (use -o ndjson for very large listings)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one site with its config')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a site; the old config is kept as a manual snapshot first')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a site with its deployments and snapshots')
            [CompletionResult]::new('deploy', 'deploy', [CompletionResultType]::ParameterValue, 'Record a deployment of the site''s current config and mark it deployed')
            [CompletionResult]::new('deployments', 'deployments', [CompletionResultType]::ParameterValue, 'List a site''s deployments, oldest first')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Deploy the config of an earlier deployment again')
            [CompletionResult]::new('snapshot', 'snapshot', [CompletionResultType]::ParameterValue, 'Save a copy of the site''s config')
            [CompletionResult]::new('snapshots', 'snapshots', [CompletionResultType]::ParameterValue, 'List a site''s config snapshots, oldest first')
            [CompletionResult]::new('restore', 'restore', [CompletionResultType]::ParameterValue, 'Put a snapshot''s config back (the current one is kept as a pre-restore snapshot)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;site;help;create' {
            break
        }
        'tenantctl;site;help;list' {
            break
        }
        'tenantctl;site;help;show' {
            break
        }
        'tenantctl;site;help;update' {
            break
        }
        'tenantctl;site;help;delete' {
            break
        }
        'tenantctl;site;help;deploy' {
            break
        }
        'tenantctl;site;help;deployments' {
            break
        }
        'tenantctl;site;help;rollback' {
            break
        }
        'tenantctl;site;help;snapshot' {
            break
        }
        'tenantctl;site;help;snapshots' {
            break
        }
        'tenantctl;site;help;restore' {
            break
        }
        'tenantctl;site;help;help' {
            break
        }
        'tenantctl;db' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Apply tenant migrations to every tenant (or those named), in parallel')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Undo tenant migrations down to version N by their down scripts, in parallel')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Per-tenant schema version, size and last migration, with a summary line first')
            [CompletionResult]::new('sql', 'sql', [CompletionResultType]::ParameterValue, 'Run one SQL statement, or a script with -f, on a tenant database (read-only unless --write)')
            [CompletionResult]::new('history', 'history', [CompletionResultType]::ParameterValue, 'List the recorded ''db sql'' and ''db vacuum'' runs, newest first')
            [CompletionResult]::new('vacuum', 'vacuum', [CompletionResultType]::ParameterValue, 'Compact tenant databases (VACUUM, then ANALYZE) and report the bytes reclaimed')
            [CompletionResult]::new('path', 'path', [CompletionResultType]::ParameterValue, 'Print where a customer''s database is: its file (for sqlite3), or on a server its role''s URL without the password')
            [CompletionResult]::new('url', 'url', [CompletionResultType]::ParameterValue, 'Print the URL an application connects to a customer''s database with')
            [CompletionResult]::new('rotate-password', 'rotate-password', [CompletionResultType]::ParameterValue, 'Give server tenants'' login roles new passwords')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;db;migrate' {
            [CompletionResult]::new('--target', '--target', [CompletionResultType]::ParameterName, 'Migrate up to version N instead of the newest')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Tenants migrated at once [default: 8 per CPU, since tenants wait on fsync, not the CPU]')
            [CompletionResult]::new('--jobs-per-server', '--jobs-per-server', [CompletionResultType]::ParameterName, 'Connections held at once on each database server (never more than it has free)')
            [CompletionResult]::new('--canary', '--canary', [CompletionResultType]::ParameterName, 'Migrate N tenants first and stop if any of them fails')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Migrate every tenant that is not deleted (the default when no customer is named)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show what would be applied, change nothing')
            [CompletionResult]::new('--continue-on-error', '--continue-on-error', [CompletionResultType]::ParameterName, 'Go on with the other tenants after a failure (exit 8 at the end)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;db;rollback' {
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The version to go back to: one that exists, below the newest (0 needs --confirm all-data)')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Tenants rolled back at once [default: 8 per CPU]')
            [CompletionResult]::new('--jobs-per-server', '--jobs-per-server', [CompletionResultType]::ParameterName, 'Connections held at once on each database server (never more than it has free)')
            [CompletionResult]::new('--canary', '--canary', [CompletionResultType]::ParameterName, 'Roll back N tenants first and stop if any of them fails')
            [CompletionResult]::new('--confirm', '--confirm', [CompletionResultType]::ParameterName, '''all-data'', required with --to 0, which drops every table the migrations made')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Roll back every tenant that is not deleted (the default when no customer is named)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show what would be undone, change nothing')
            [CompletionResult]::new('--continue-on-error', '--continue-on-error', [CompletionResultType]::ParameterName, 'Go on with the other tenants after a failure (exit 8 at the end)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;db;status' {
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Only tenants on this server (''local'' for the SQLite files)')
            [CompletionResult]::new('--jobs-per-server', '--jobs-per-server', [CompletionResultType]::ParameterName, 'Connections held at once on each database server (never more than it has free)')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--behind', '--behind', [CompletionResultType]::ParameterName, 'Only tenants behind the newest migration')
            [CompletionResult]::new('--failed', '--failed', [CompletionResultType]::ParameterName, 'Only tenants whose last migration failed')
            [CompletionResult]::new('--check', '--check', [CompletionResultType]::ParameterName, 'Also open every tenant database: quick_check and the version it really has')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;db;sql' {
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Run the statements in FILE (''-'' for stdin) as one transaction')
            [CompletionResult]::new('--file', '--file', [CompletionResultType]::ParameterName, 'Run the statements in FILE (''-'' for stdin) as one transaction')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Stop a statement that runs longer than this, e.g. 30s or 5m')
            [CompletionResult]::new('--jobs-per-server', '--jobs-per-server', [CompletionResultType]::ParameterName, 'Connections held at once on each database server (never more than it has free)')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Run the same read-only statement on every active tenant; its rows start with a tenant column')
            [CompletionResult]::new('--write', '--write', [CompletionResultType]::ParameterName, 'Allow the statement to change data')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;db;history' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only runs at or after TIME (RFC 3339, YYYY-MM-DD, or an age such as 24h or 7d)')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Show at most N runs; 0 for all')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--failed', '--failed', [CompletionResultType]::ParameterName, 'Only runs that failed')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;db;vacuum' {
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Tenants compacted at once [default: 2 per CPU]')
            [CompletionResult]::new('--jobs-per-server', '--jobs-per-server', [CompletionResultType]::ParameterName, 'Connections held at once on each database server (never more than it has free)')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Compact every tenant database that is not deleted')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;db;path' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;db;url' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--reveal', '--reveal', [CompletionResultType]::ParameterName, 'Put the tenant role''s password into the URL')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;db;rotate-password' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Every server tenant that is not deleted')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;db;help' {
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Apply tenant migrations to every tenant (or those named), in parallel')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Undo tenant migrations down to version N by their down scripts, in parallel')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Per-tenant schema version, size and last migration, with a summary line first')
            [CompletionResult]::new('sql', 'sql', [CompletionResultType]::ParameterValue, 'Run one SQL statement, or a script with -f, on a tenant database (read-only unless --write)')
            [CompletionResult]::new('history', 'history', [CompletionResultType]::ParameterValue, 'List the recorded ''db sql'' and ''db vacuum'' runs, newest first')
            [CompletionResult]::new('vacuum', 'vacuum', [CompletionResultType]::ParameterValue, 'Compact tenant databases (VACUUM, then ANALYZE) and report the bytes reclaimed')
            [CompletionResult]::new('path', 'path', [CompletionResultType]::ParameterValue, 'Print where a customer''s database is: its file (for sqlite3), or on a server its role''s URL without the password')
            [CompletionResult]::new('url', 'url', [CompletionResultType]::ParameterValue, 'Print the URL an application connects to a customer''s database with')
            [CompletionResult]::new('rotate-password', 'rotate-password', [CompletionResultType]::ParameterValue, 'Give server tenants'' login roles new passwords')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;db;help;migrate' {
            break
        }
        'tenantctl;db;help;rollback' {
            break
        }
        'tenantctl;db;help;status' {
            break
        }
        'tenantctl;db;help;sql' {
            break
        }
        'tenantctl;db;help;history' {
            break
        }
        'tenantctl;db;help;vacuum' {
            break
        }
        'tenantctl;db;help;path' {
            break
        }
        'tenantctl;db;help;url' {
            break
        }
        'tenantctl;db;help;rotate-password' {
            break
        }
        'tenantctl;db;help;help' {
            break
        }
        'tenantctl;resolve' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;doctor' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--fix', '--fix', [CompletionResultType]::ParameterName, 'Repair what is safe to repair (modes, recorded versions, crash leftovers)')
            [CompletionResult]::new('--adopt', '--adopt', [CompletionResultType]::ParameterName, 'With --fix: give each tenant database no customer owns its customer again (details from the newest backup that knew it)')
            [CompletionResult]::new('--trash', '--trash', [CompletionResultType]::ParameterName, 'With --fix: move each tenant database no customer owns to the trash')
            [CompletionResult]::new('--full', '--full', [CompletionResultType]::ParameterName, 'Check the integrity of every tenant database, also those unchanged since their last clean check')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;backup' {
            [CompletionResult]::new('--customer', '--customer', [CompletionResultType]::ParameterName, 'Only these customers'' databases (slug, id or email); repeatable')
            [CompletionResult]::new('--label', '--label', [CompletionResultType]::ParameterName, 'A label stored in the manifest')
            [CompletionResult]::new('--kind', '--kind', [CompletionResultType]::ParameterName, 'Why the set was taken')
            [CompletionResult]::new('--jobs-per-server', '--jobs-per-server', [CompletionResultType]::ParameterName, 'Dumps run at once on each database server (never more than it has connections free)')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'The catalog and every tenant that is not deleted (the default)')
            [CompletionResult]::new('--catalog', '--catalog', [CompletionResultType]::ParameterName, 'Only the catalog')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List backup sets from their manifests (works without the catalog)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one set''s manifest')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Recompute checksums and quick_check every file (default: the newest set)')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Remove sets outside the retention policy; never the newest set')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;backup;list' {
            [CompletionResult]::new('--customer', '--customer', [CompletionResultType]::ParameterName, 'Only sets holding this customer (slug or id)')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;backup;show' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;backup;verify' {
            [CompletionResult]::new('--scratch-server', '--scratch-server', [CompletionResultType]::ParameterName, 'With --deep, restore archives on this server instead of the one they came from')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Verify every set')
            [CompletionResult]::new('--deep', '--deep', [CompletionResultType]::ParameterName, 'Restore every copy to check it, not only its checksum and structure')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;backup;prune' {
            [CompletionResult]::new('--keep-last', '--keep-last', [CompletionResultType]::ParameterName, 'Keep the N newest sets [default: the backup_keep_last setting]')
            [CompletionResult]::new('--keep-daily', '--keep-daily', [CompletionResultType]::ParameterName, 'Keep the newest set of each of the last N days [default: backup_keep_daily]')
            [CompletionResult]::new('--keep-weekly', '--keep-weekly', [CompletionResultType]::ParameterName, 'Keep the newest set of each of the last N weeks [default: backup_keep_weekly]')
            [CompletionResult]::new('--keep-monthly', '--keep-monthly', [CompletionResultType]::ParameterName, 'Keep the newest set of each of the last N months [default: backup_keep_monthly]')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show what would be removed, remove nothing')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;backup;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List backup sets from their manifests (works without the catalog)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one set''s manifest')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Recompute checksums and quick_check every file (default: the newest set)')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Remove sets outside the retention policy; never the newest set')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;backup;help;list' {
            break
        }
        'tenantctl;backup;help;show' {
            break
        }
        'tenantctl;backup;help;verify' {
            break
        }
        'tenantctl;backup;help;prune' {
            break
        }
        'tenantctl;backup;help;help' {
            break
        }
        'tenantctl;restore' {
            [CompletionResult]::new('--at', '--at', [CompletionResultType]::ParameterName, 'Use the newest set finished at or before TIME, to the microsecond (RFC 3339, date, or age such as 6h)')
            [CompletionResult]::new('--customer', '--customer', [CompletionResultType]::ParameterName, 'Restore these customers'' databases; repeatable (a deleted customer comes back with ''customer undelete CUSTOMER --from-backup'')')
            [CompletionResult]::new('--confirm', '--confirm', [CompletionResultType]::ParameterName, '''catalog'' or ''everything'', to confirm')
            [CompletionResult]::new('--into', '--into', [CompletionResultType]::ParameterName, 'Copy the one --customer''s data into this other existing customer')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--catalog', '--catalog', [CompletionResultType]::ParameterName, 'Restore the catalog (needs --confirm catalog)')
            [CompletionResult]::new('--everything', '--everything', [CompletionResultType]::ParameterName, 'Restore the catalog and every tenant in the set (needs --confirm everything)')
            [CompletionResult]::new('--if-missing', '--if-missing', [CompletionResultType]::ParameterName, 'Only restore tenants whose database file is absent')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show the set that would be used, what it would replace or create and what the pre-restore set would save first; change nothing (needs no --confirm)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;import' {
            [CompletionResult]::new('--plan', '--plan', [CompletionResultType]::ParameterName, 'Plan for customers whose files name none [default: the default_plan setting]')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Report what would happen, write nothing')
            [CompletionResult]::new('--continue-on-error', '--continue-on-error', [CompletionResultType]::ParameterName, 'Import the valid files even when some are invalid (exit 8)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;export' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Replace a folder that is not empty: a fresh tree is written beside it and swapped in')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;key' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create an API key; its token is printed once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List API keys (never their secrets)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke an API key')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check a token: exit 0 with its customer and scopes, exit 3 if not valid')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;key;create' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'What the key is for')
            [CompletionResult]::new('--scope', '--scope', [CompletionResultType]::ParameterName, 'A scope such as sites:read or deploy (lowercase; ''config set key_scopes'' may restrict them); repeatable [default: sites:read]')
            [CompletionResult]::new('--expires-in', '--expires-in', [CompletionResultType]::ParameterName, 'Expire after this long, e.g. 90d or 12h')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;key;list' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;key;revoke' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;key;verify' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;key;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create an API key; its token is printed once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List API keys (never their secrets)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke an API key')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check a token: exit 0 with its customer and scopes, exit 3 if not valid')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;key;help;create' {
            break
        }
        'tenantctl;key;help;list' {
            break
        }
        'tenantctl;key;help;revoke' {
            break
        }
        'tenantctl;key;help;verify' {
            break
        }
        'tenantctl;key;help;help' {
            break
        }
        'tenantctl;session' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Open a portal session for a customer (as the portal does at login); the token is printed once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List sessions (never their tokens)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a session, or every session of a customer')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Delete expired sessions (for cron)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;session;create' {
            [CompletionResult]::new('--device', '--device', [CompletionResultType]::ParameterName, 'The device or browser')
            [CompletionResult]::new('--ttl', '--ttl', [CompletionResultType]::ParameterName, 'How long the session lives, e.g. 7d or 12h')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;session;list' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--active', '--active', [CompletionResultType]::ParameterName, 'Only sessions that are neither revoked, expired nor blocked')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;session;revoke' {
            [CompletionResult]::new('--customer', '--customer', [CompletionResultType]::ParameterName, 'Revoke this customer''s sessions (with --all)')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Every session of --customer')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;session;prune' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;session;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Open a portal session for a customer (as the portal does at login); the token is printed once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List sessions (never their tokens)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a session, or every session of a customer')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Delete expired sessions (for cron)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;session;help;create' {
            break
        }
        'tenantctl;session;help;list' {
            break
        }
        'tenantctl;session;help;revoke' {
            break
        }
        'tenantctl;session;help;prune' {
            break
        }
        'tenantctl;session;help;help' {
            break
        }
        'tenantctl;usage' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('record', 'record', [CompletionResultType]::ParameterValue, 'Record metered usage')
            [CompletionResult]::new('report', 'report', [CompletionResultType]::ParameterValue, 'Usage per customer for a month, with storage measured now')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;usage;record' {
            [CompletionResult]::new('--at', '--at', [CompletionResultType]::ParameterName, 'When it was used [default: now]; sets the month')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;usage;report' {
            [CompletionResult]::new('--month', '--month', [CompletionResultType]::ParameterName, 'YYYY-MM [default: this month]')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;usage;help' {
            [CompletionResult]::new('record', 'record', [CompletionResultType]::ParameterValue, 'Record metered usage')
            [CompletionResult]::new('report', 'report', [CompletionResultType]::ParameterValue, 'Usage per customer for a month, with storage measured now')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;usage;help;record' {
            break
        }
        'tenantctl;usage;help;report' {
            break
        }
        'tenantctl;usage;help;help' {
            break
        }
        'tenantctl;quota' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Usage against limits; exit 5 if any customer is over')
            [CompletionResult]::new('enforce', 'enforce', [CompletionResultType]::ParameterValue, 'For cron: warn at 80 % and suspend at 100 % of the storage limit')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;quota;check' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;quota;enforce' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Say what would be done, do nothing')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;quota;help' {
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Usage against limits; exit 5 if any customer is over')
            [CompletionResult]::new('enforce', 'enforce', [CompletionResultType]::ParameterValue, 'For cron: warn at 80 % and suspend at 100 % of the storage limit')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;quota;help;check' {
            break
        }
        'tenantctl;quota;help;enforce' {
            break
        }
        'tenantctl;quota;help;help' {
            break
        }
        'tenantctl;stats' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;plan' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List plans with their quotas and how many customers use each')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Create a plan or change its quotas')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;plan;list' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;plan;set' {
            [CompletionResult]::new('--max-sites', '--max-sites', [CompletionResultType]::ParameterName, 'Sites a customer may have')
            [CompletionResult]::new('--max-storage-mb', '--max-storage-mb', [CompletionResultType]::ParameterName, 'Tenant database size in MiB')
            [CompletionResult]::new('--max-bandwidth-gb', '--max-bandwidth-gb', [CompletionResultType]::ParameterName, 'Bandwidth per month in GiB')
            [CompletionResult]::new('--max-api-calls', '--max-api-calls', [CompletionResultType]::ParameterName, 'API calls per month')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--force', '--force', [CompletionResultType]::ParameterName, 'Apply a change even when it puts customers on the plan over a quota')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;plan;help' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List plans with their quotas and how many customers use each')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Create a plan or change its quotas')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;plan;help;list' {
            break
        }
        'tenantctl;plan;help;set' {
            break
        }
        'tenantctl;plan;help;help' {
            break
        }
        'tenantctl;server' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Register a PostgreSQL server that tenants can be placed on')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the servers, the built-in ''local'' first')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one server (its password as ***)')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Connect to a server: reachability, latency, version, tenants, free capacity')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a server''s login, capacity or status')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Forget a server that hosts no tenant (its databases stay on it)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;server;add' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'Admin login: postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE')
            [CompletionResult]::new('--mode', '--mode', [CompletionResultType]::ParameterName, 'One database per tenant, or one schema per tenant in the URL''s database')
            [CompletionResult]::new('--capacity', '--capacity', [CompletionResultType]::ParameterName, 'Most tenants the server may hold (default: no limit)')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--password-stdin', '--password-stdin', [CompletionResultType]::ParameterName, 'Read the login''s password from the first line of stdin')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;server;list' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;server;show' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;server;test' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;server;update' {
            [CompletionResult]::new('--url', '--url', [CompletionResultType]::ParameterName, 'A new admin login URL (checked against the server before it is saved)')
            [CompletionResult]::new('--capacity', '--capacity', [CompletionResultType]::ParameterName, 'Most tenants the server may hold')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, '''draining'' keeps its tenants but places no new ones on it')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--password-stdin', '--password-stdin', [CompletionResultType]::ParameterName, 'Read a new password for the login from the first line of stdin')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;server;remove' {
            [CompletionResult]::new('--confirm', '--confirm', [CompletionResultType]::ParameterName, 'The server''s name, to confirm')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;server;help' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Register a PostgreSQL server that tenants can be placed on')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the servers, the built-in ''local'' first')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one server (its password as ***)')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Connect to a server: reachability, latency, version, tenants, free capacity')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a server''s login, capacity or status')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Forget a server that hosts no tenant (its databases stay on it)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;server;help;add' {
            break
        }
        'tenantctl;server;help;list' {
            break
        }
        'tenantctl;server;help;show' {
            break
        }
        'tenantctl;server;help;test' {
            break
        }
        'tenantctl;server;help;update' {
            break
        }
        'tenantctl;server;help;remove' {
            break
        }
        'tenantctl;server;help;help' {
            break
        }
        'tenantctl;audit' {
            [CompletionResult]::new('--customer', '--customer', [CompletionResultType]::ParameterName, 'Only events of this customer (slug, id or email)')
            [CompletionResult]::new('--action', '--action', [CompletionResultType]::ParameterName, 'Only this action (customer.create), or actions starting with a prefix ending in ''.''')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only events at or after TIME (RFC 3339, YYYY-MM-DD, or an age such as 24h or 7d)')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Show at most N events; 0 for all')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;completions' {
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;create-customer' {
            [CompletionResult]::new('--plan', '--plan', [CompletionResultType]::ParameterName, 'Plan [default: the default_plan setting, or starter]')
            [CompletionResult]::new('--slug', '--slug', [CompletionResultType]::ParameterName, 'Slug (DNS label) [default: derived from the company or the email]')
            [CompletionResult]::new('--meta', '--meta', [CompletionResultType]::ParameterName, 'Metadata entry key=value (value parsed as JSON when it can be); repeatable')
            [CompletionResult]::new('--server', '--server', [CompletionResultType]::ParameterName, 'Where its database goes: ''local'', a server name, or ''auto'' (the active server with the most free capacity) [default: the default_server setting, or local]')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;list-customers' {
            [CompletionResult]::new('--plan', '--plan', [CompletionResultType]::ParameterName, 'Only customers on this plan')
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'Only customers in this status')
            [CompletionResult]::new('--search', '--search', [CompletionResultType]::ParameterName, 'Only customers whose slug, email, name or company contains TEXT')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Show at most N customers; 0 for all')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;create-site' {
            [CompletionResult]::new('--domain', '--domain', [CompletionResultType]::ParameterName, 'Domain, unique across sites [default: <name>.<slug>.<platform_domain>]')
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Port, unique across sites (1-65535)')
            [CompletionResult]::new('--business-type', '--business-type', [CompletionResultType]::ParameterName, 'Kind of business, e.g. translation or shop')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Config JSON object from FILE, or ''-'' for stdin')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;list-sites' {
            [CompletionResult]::new('--status', '--status', [CompletionResultType]::ParameterName, 'Only sites in this status')
            [CompletionResult]::new('--domain', '--domain', [CompletionResultType]::ParameterName, 'Only sites whose domain contains TEXT')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'Show at most N sites; 0 for all')
            [CompletionResult]::new('--home', '--home', [CompletionResultType]::ParameterName, 'Home folder [default: $XDG_DATA_HOME/tenantctl or ~/.local/share/tenantctl]')
            [CompletionResult]::new('--backup-dir', '--backup-dir', [CompletionResultType]::ParameterName, 'Where backup sets live [default: HOME/backups]')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format [default: table]')
            [CompletionResult]::new('--actor', '--actor', [CompletionResultType]::ParameterName, 'Who is acting, for the audit log [default: $TENANTCTL_ACTOR, $USER or unknown]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour messages (NO_COLOR is honoured with auto)')
            [CompletionResult]::new('--lock-timeout', '--lock-timeout', [CompletionResultType]::ParameterName, 'How long to wait for the home lock or a catalog another process is writing before giving up (exit 6), e.g. 30s or 2m')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Same as --output json')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only data and errors')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Print more detail on stderr; -vv also prints every catalog SQL statement with its time')
            [CompletionResult]::new('--no-progress', '--no-progress', [CompletionResultType]::ParameterName, 'Never draw progress bars')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'tenantctl;help' {
            [CompletionResult]::new('init', 'init', [CompletionResultType]::ParameterValue, 'Create the home, the catalog and the starter tenant migrations')
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Apply or list catalog migrations')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the state of the home at a glance')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Read and change catalog settings')
            [CompletionResult]::new('customer', 'customer', [CompletionResultType]::ParameterValue, 'Manage customers (tenants)')
            [CompletionResult]::new('site', 'site', [CompletionResultType]::ParameterValue, 'Manage customers'' sites, deployments and config snapshots')
            [CompletionResult]::new('db', 'db', [CompletionResultType]::ParameterValue, 'Tenant databases: migrate, status, SQL, path')
            [CompletionResult]::new('resolve', 'resolve', [CompletionResultType]::ParameterValue, 'Which customer serves a hostname')
            [CompletionResult]::new('doctor', 'doctor', [CompletionResultType]::ParameterValue, 'Check the catalog and every tenant database; --fix repairs what is safe')
            [CompletionResult]::new('backup', 'backup', [CompletionResultType]::ParameterValue, 'Take a backup set, or list, show, verify and prune sets')
            [CompletionResult]::new('restore', 'restore', [CompletionResultType]::ParameterValue, 'Put databases back from a backup set')
            [CompletionResult]::new('import', 'import', [CompletionResultType]::ParameterValue, 'Import the legacy file-based site configs')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Write the catalog out in the legacy file layout')
            [CompletionResult]::new('key', 'key', [CompletionResultType]::ParameterValue, 'API keys: create, list, revoke, verify')
            [CompletionResult]::new('session', 'session', [CompletionResultType]::ParameterValue, 'Portal sessions: create, list, revoke, prune')
            [CompletionResult]::new('usage', 'usage', [CompletionResultType]::ParameterValue, 'Record and report metered usage')
            [CompletionResult]::new('quota', 'quota', [CompletionResultType]::ParameterValue, 'Check usage against limits, and enforce the storage limit')
            [CompletionResult]::new('stats', 'stats', [CompletionResultType]::ParameterValue, 'Platform statistics for admins')
            [CompletionResult]::new('plan', 'plan', [CompletionResultType]::ParameterValue, 'List and change plans and their quotas')
            [CompletionResult]::new('server', 'server', [CompletionResultType]::ParameterValue, 'Database servers that host tenants: add, list, show, test, update, remove')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'List audit events, newest first')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('create-customer', 'create-customer', [CompletionResultType]::ParameterValue, 'Same as ''customer create''')
            [CompletionResult]::new('list-customers', 'list-customers', [CompletionResultType]::ParameterValue, 'Same as ''customer list''')
            [CompletionResult]::new('create-site', 'create-site', [CompletionResultType]::ParameterValue, 'Same as ''site create''')
            [CompletionResult]::new('list-sites', 'list-sites', [CompletionResultType]::ParameterValue, 'Same as ''site list''')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'tenantctl;help;init' {
            break
        }
        'tenantctl;help;migrate' {
            break
        }
        'tenantctl;help;status' {
            break
        }
        'tenantctl;help;config' {
            [CompletionResult]::new('get', 'get', [CompletionResultType]::ParameterValue, 'Print one setting''s value')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Change a setting')
            [CompletionResult]::new('unset', 'unset', [CompletionResultType]::ParameterValue, 'Remove a setting, so its default applies again')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List every setting with its value and default')
            break
        }
        'tenantctl;help;config;get' {
            break
        }
        'tenantctl;help;config;set' {
            break
        }
        'tenantctl;help;config;unset' {
            break
        }
        'tenantctl;help;config;list' {
            break
        }
        'tenantctl;help;customer' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a customer and its own tenant database')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List customers')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show a customer with usage against quota and its sites')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a customer''s details, plan, quota overrides or metadata')
            [CompletionResult]::new('suspend', 'suspend', [CompletionResultType]::ParameterValue, 'Suspend a customer (its keys stop working)')
            [CompletionResult]::new('reactivate', 'reactivate', [CompletionResultType]::ParameterValue, 'Make a suspended customer active again')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Soft-delete: stop sites, revoke keys and sessions, move the database to the trash')
            [CompletionResult]::new('undelete', 'undelete', [CompletionResultType]::ParameterValue, 'Reverse a soft delete')
            [CompletionResult]::new('purge', 'purge', [CompletionResultType]::ParameterValue, 'Remove a deleted customer''s database, sites, snapshots and keys for good')
            [CompletionResult]::new('move', 'move', [CompletionResultType]::ParameterValue, 'Move a customer''s tenant database to another server or engine')
            break
        }
        'tenantctl;help;customer;create' {
            break
        }
        'tenantctl;help;customer;list' {
            break
        }
        'tenantctl;help;customer;show' {
            break
        }
        'tenantctl;help;customer;update' {
            break
        }
        'tenantctl;help;customer;suspend' {
            break
        }
        'tenantctl;help;customer;reactivate' {
            break
        }
        'tenantctl;help;customer;delete' {
            break
        }
        'tenantctl;help;customer;undelete' {
            break
        }
        'tenantctl;help;customer;purge' {
            break
        }
        'tenantctl;help;customer;move' {
            break
        }
        'tenantctl;help;site' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a site for a customer, within its plan''s site limit')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List sites, streamed (use -o ndjson for very large listings)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one site with its config')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a site; the old config is kept as a manual snapshot first')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete a site with its deployments and snapshots')
            [CompletionResult]::new('deploy', 'deploy', [CompletionResultType]::ParameterValue, 'Record a deployment of the site''s current config and mark it deployed')
            [CompletionResult]::new('deployments', 'deployments', [CompletionResultType]::ParameterValue, 'List a site''s deployments, oldest first')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Deploy the config of an earlier deployment again')
            [CompletionResult]::new('snapshot', 'snapshot', [CompletionResultType]::ParameterValue, 'Save a copy of the site''s config')
            [CompletionResult]::new('snapshots', 'snapshots', [CompletionResultType]::ParameterValue, 'List a site''s config snapshots, oldest first')
            [CompletionResult]::new('restore', 'restore', [CompletionResultType]::ParameterValue, 'Put a snapshot''s config back (the current one is kept as a pre-restore snapshot)')
            break
        }
        'tenantctl;help;site;create' {
            break
        }
        'tenantctl;help;site;list' {
            break
        }
        'tenantctl;help;site;show' {
            break
        }
        'tenantctl;help;site;update' {
            break
        }
        'tenantctl;help;site;delete' {
            break
        }
        'tenantctl;help;site;deploy' {
            break
        }
        'tenantctl;help;site;deployments' {
            break
        }
        'tenantctl;help;site;rollback' {
            break
        }
        'tenantctl;help;site;snapshot' {
            break
        }
        'tenantctl;help;site;snapshots' {
            break
        }
        'tenantctl;help;site;restore' {
            break
        }
        'tenantctl;help;db' {
            [CompletionResult]::new('migrate', 'migrate', [CompletionResultType]::ParameterValue, 'Apply tenant migrations to every tenant (or those named), in parallel')
            [CompletionResult]::new('rollback', 'rollback', [CompletionResultType]::ParameterValue, 'Undo tenant migrations down to version N by their down scripts, in parallel')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Per-tenant schema version, size and last migration, with a summary line first')
            [CompletionResult]::new('sql', 'sql', [CompletionResultType]::ParameterValue, 'Run one SQL statement, or a script with -f, on a tenant database (read-only unless --write)')
            [CompletionResult]::new('history', 'history', [CompletionResultType]::ParameterValue, 'List the recorded ''db sql'' and ''db vacuum'' runs, newest first')
            [CompletionResult]::new('vacuum', 'vacuum', [CompletionResultType]::ParameterValue, 'Compact tenant databases (VACUUM, then ANALYZE) and report the bytes reclaimed')
            [CompletionResult]::new('path', 'path', [CompletionResultType]::ParameterValue, 'Print where a customer''s database is: its file (for sqlite3), or on a server its role''s URL without the password')
            [CompletionResult]::new('url', 'url', [CompletionResultType]::ParameterValue, 'Print the URL an application connects to a customer''s database with')
            [CompletionResult]::new('rotate-password', 'rotate-password', [CompletionResultType]::ParameterValue, 'Give server tenants'' login roles new passwords')
            break
        }
        'tenantctl;help;db;migrate' {
            break
        }
        'tenantctl;help;db;rollback' {
            break
        }
        'tenantctl;help;db;status' {
            break
        }
        'tenantctl;help;db;sql' {
            break
        }
        'tenantctl;help;db;history' {
            break
        }
        'tenantctl;help;db;vacuum' {
            break
        }
        'tenantctl;help;db;path' {
            break
        }
        'tenantctl;help;db;url' {
            break
        }
        'tenantctl;help;db;rotate-password' {
            break
        }
        'tenantctl;help;resolve' {
            break
        }
        'tenantctl;help;doctor' {
            break
        }
        'tenantctl;help;backup' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List backup sets from their manifests (works without the catalog)')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one set''s manifest')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Recompute checksums and quick_check every file (default: the newest set)')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Remove sets outside the retention policy; never the newest set')
            break
        }
        'tenantctl;help;backup;list' {
            break
        }
        'tenantctl;help;backup;show' {
            break
        }
        'tenantctl;help;backup;verify' {
            break
        }
        'tenantctl;help;backup;prune' {
            break
        }
        'tenantctl;help;restore' {
            break
        }
        'tenantctl;help;import' {
            break
        }
        'tenantctl;help;export' {
            break
        }
        'tenantctl;help;key' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create an API key; its token is printed once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List API keys (never their secrets)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke an API key')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Check a token: exit 0 with its customer and scopes, exit 3 if not valid')
            break
        }
        'tenantctl;help;key;create' {
            break
        }
        'tenantctl;help;key;list' {
            break
        }
        'tenantctl;help;key;revoke' {
            break
        }
        'tenantctl;help;key;verify' {
            break
        }
        'tenantctl;help;session' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Open a portal session for a customer (as the portal does at login); the token is printed once')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List sessions (never their tokens)')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'Revoke a session, or every session of a customer')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Delete expired sessions (for cron)')
            break
        }
        'tenantctl;help;session;create' {
            break
        }
        'tenantctl;help;session;list' {
            break
        }
        'tenantctl;help;session;revoke' {
            break
        }
        'tenantctl;help;session;prune' {
            break
        }
        'tenantctl;help;usage' {
            [CompletionResult]::new('record', 'record', [CompletionResultType]::ParameterValue, 'Record metered usage')
            [CompletionResult]::new('report', 'report', [CompletionResultType]::ParameterValue, 'Usage per customer for a month, with storage measured now')
            break
        }
        'tenantctl;help;usage;record' {
            break
        }
        'tenantctl;help;usage;report' {
            break
        }
        'tenantctl;help;quota' {
            [CompletionResult]::new('check', 'check', [CompletionResultType]::ParameterValue, 'Usage against limits; exit 5 if any customer is over')
            [CompletionResult]::new('enforce', 'enforce', [CompletionResultType]::ParameterValue, 'For cron: warn at 80 % and suspend at 100 % of the storage limit')
            break
        }
        'tenantctl;help;quota;check' {
            break
        }
        'tenantctl;help;quota;enforce' {
            break
        }
        'tenantctl;help;stats' {
            break
        }
        'tenantctl;help;plan' {
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List plans with their quotas and how many customers use each')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Create a plan or change its quotas')
            break
        }
        'tenantctl;help;plan;list' {
            break
        }
        'tenantctl;help;plan;set' {
            break
        }
        'tenantctl;help;server' {
            [CompletionResult]::new('add', 'add', [CompletionResultType]::ParameterValue, 'Register a PostgreSQL server that tenants can be placed on')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'List the servers, the built-in ''local'' first')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one server (its password as ***)')
            [CompletionResult]::new('test', 'test', [CompletionResultType]::ParameterValue, 'Connect to a server: reachability, latency, version, tenants, free capacity')
            [CompletionResult]::new('update', 'update', [CompletionResultType]::ParameterValue, 'Change a server''s login, capacity or status')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Forget a server that hosts no tenant (its databases stay on it)')
            break
        }
        'tenantctl;help;server;add' {
            break
        }
        'tenantctl;help;server;list' {
            break
        }
        'tenantctl;help;server;show' {
            break
        }
        'tenantctl;help;server;test' {
            break
        }
        'tenantctl;help;server;update' {
            break
        }
        'tenantctl;help;server;remove' {
            break
        }
        'tenantctl;help;audit' {
            break
        }
        'tenantctl;help;completions' {
            break
        }
        'tenantctl;help;create-customer' {
            break
        }
        'tenantctl;help;list-customers' {
            break
        }
        'tenantctl;help;create-site' {
            break
        }
        'tenantctl;help;list-sites' {
            break
        }
        'tenantctl;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
