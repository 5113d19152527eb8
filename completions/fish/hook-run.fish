function __hook-run_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __hook-run_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __hook-run_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __hook-run_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __hook-run_parse_tokens -S
    set -l unparsed_tokens (__hook-run_tokens -pc)
    switch $unparsed_tokens[1]
    case 'hook-run'
        __hook-run_parse_subcommand 0 'rootfs=' 'annotations=' 'pid=' 'env=+' 'apply' 'timeout=' 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'help'
            __hook-run_parse_subcommand -r 1 'version'
        end
    end
end

function __hook-run_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __hook-run_parse_subcommand -S -a positional_count
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

function __hook-run_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __hook-run_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__hook-run_tokens -p)
    if test -z "$(__hook-run_tokens -t)"
        set -l index (count (__hook-run_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'hook-run' -f
complete -c 'hook-run' -n '__hook-run_should_offer_completions_for_flags_or_options "hook-run" rootfs' -l 'rootfs' -d 'The root file system the hooks work on (ENROOT_ROOTFS).' -rfa '(__hook-run_complete_directories)'
complete -c 'hook-run' -n '__hook-run_should_offer_completions_for_flags_or_options "hook-run" annotations' -l 'annotations' -d 'Annotations: a JSON object of strings, or an environment document (its "annotations"); - for stdin.' -rF
complete -c 'hook-run' -n '__hook-run_should_offer_completions_for_flags_or_options "hook-run" pid' -l 'pid' -d 'ENROOT_PID for the hooks (default: this process).' -rfka ''
complete -c 'hook-run' -n '__hook-run_should_offer_completions_for_flags_or_options "hook-run"' -l 'env' -d 'A variable of the container so far (NAME=VALUE), written to ENROOT_ENVIRON before the first hook.' -rfka ''
complete -c 'hook-run' -n '__hook-run_should_offer_completions_for_flags_or_options "hook-run" apply' -l 'apply' -d 'Make the mounts the hooks asked for (in this process\'s mount namespace).'
complete -c 'hook-run' -n '__hook-run_should_offer_completions_for_flags_or_options "hook-run" timeout' -l 'timeout' -d 'Seconds a hook may run before it is killed (default: HOOK_RUN_TIMEOUT, else 60).' -rfka ''
complete -c 'hook-run' -n '__hook-run_should_offer_completions_for_flags_or_options "hook-run" version' -l 'version' -d 'Show the version.'
complete -c 'hook-run' -n '__hook-run_should_offer_completions_for_flags_or_options "hook-run" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'hook-run' -n '__hook-run_should_offer_completions_for_positional "hook-run" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'hook-run' -n '__hook-run_should_offer_completions_for_flags_or_options "hook-run help" version' -l 'version' -d 'Show the version.'
