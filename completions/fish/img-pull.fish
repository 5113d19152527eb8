function __img-pull_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __img-pull_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __img-pull_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __img-pull_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __img-pull_parse_tokens -S
    set -l unparsed_tokens (__img-pull_tokens -pc)
    switch $unparsed_tokens[1]
    case 'img-pull'
        __img-pull_parse_subcommand 1 'tag=' 'cache=' 'arch=' 'allow-http' 'offline' 'verify' 'connections=' 'retries=' 'ca-file=' 'q/quiet' 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'help'
            __img-pull_parse_subcommand -r 1 'version'
        end
    end
end

function __img-pull_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __img-pull_parse_subcommand -S -a positional_count
    argparse -s r -- $argv
    set -l option_specs $argv[2..]
    set -l is_repeating_positional $_flag_r
    set -el _flag_r
    set -a commands $unparsed_tokens[1]
    set positional_index 0
    while true
        set -e unparsed_tokens[1]
        argparse -sn "$commands" $option_specs -- $unparsed_tokens 2> /dev/null
        set unparsed_tokens $argv
        set positional_index (math $positional_index + 1)
        for non_repeating_flag_or_option in $non_repeating_flags_or_options
            if set -ql "_flag_$(string replace -a - _ -- $non_repeating_flag_or_option)"
                set non_repeating_flags_or_options_absent 1
                break
            end
        end
        test (count $unparsed_tokens) -eq 0 -o \( -z "$is_repeating_positional" -a "$positional_index" -gt "$positional_count" \) && break
    end
end

function __img-pull_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __img-pull_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__img-pull_tokens -p)
    if test -z "$(__img-pull_tokens -t)"
        set -l index (count (__img-pull_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'img-pull' -f
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_flags_or_options "img-pull" tag' -l 'tag' -d 'With a layout or archive holding several images: the one with this name (ref.name, or RepoTag of docker save), compared as docker compares names; a tag alone when only one image has it.' -rfka ''
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_flags_or_options "img-pull" cache' -l 'cache' -d 'The cache directory.' -rfa '(__img-pull_complete_directories)'
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_flags_or_options "img-pull" arch' -l 'arch' -d 'The architecture to pull from a multi-platform image (amd64, arm64, arm64/v8, x86_64, ...); default: this machine\'s.' -rfka ''
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_flags_or_options "img-pull" allow-http' -l 'allow-http' -d 'Allow plain HTTP to the registry (also ENROOT_ALLOW_HTTP=yes).'
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_flags_or_options "img-pull" offline' -l 'offline' -d 'Resolve from the cache alone; fail if anything is missing. (Without it, a registry out of reach serves a tag pulled before from the cache, with a warning.)'
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_flags_or_options "img-pull" verify' -l 'verify' -d 'Re-hash the layers already in the cache; corrupt ones are fetched again.'
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_flags_or_options "img-pull" connections' -l 'connections' -d 'Parallel connections for layer downloads (default: ENROOT_MAX_CONNECTIONS, else 10).' -rfka ''
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_flags_or_options "img-pull" retries' -l 'retries' -d 'Retries of a failed request (connection errors, 429, 5xx) before giving up (default: ENROOT_TRANSFER_RETRIES, else 4).' -rfka ''
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_flags_or_options "img-pull" ca-file' -l 'ca-file' -d 'A CA certificate file for registries with their own certificate authority (else CURL_CA_BUNDLE, else SSL_CERT_FILE, as curl takes them).' -rF
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_flags_or_options "img-pull" q quiet' -l 'quiet' -s 'q' -d 'No progress messages.'
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_flags_or_options "img-pull" version' -l 'version' -d 'Show the version.'
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_flags_or_options "img-pull" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_positional "img-pull" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'img-pull' -n '__img-pull_should_offer_completions_for_flags_or_options "img-pull help" version' -l 'version' -d 'Show the version.'
