function __ns-enter_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __ns-enter_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __ns-enter_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __ns-enter_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __ns-enter_parse_tokens -S
    set -l unparsed_tokens (__ns-enter_tokens -pc)
    switch $unparsed_tokens[1]
    case 'ns-enter'
        __ns-enter_parse_subcommand -r 1 'e/environment=' 'environment-variable=' 'image=' 'mount=+' 'env=+' 'workdir=' 'writable' 'no-writable' 'entrypoint' 'no-entrypoint' 'annotation=+' 'root' 'name=' 'join=' 'no-hooks' 'hook-timeout=' 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'help'
            __ns-enter_parse_subcommand -r 1 'version'
        end
    end
end

function __ns-enter_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __ns-enter_parse_subcommand -S -a positional_count
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

function __ns-enter_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __ns-enter_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__ns-enter_tokens -p)
    if test -z "$(__ns-enter_tokens -t)"
        set -l index (count (__ns-enter_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'ns-enter' -f
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" e environment' -s 'e' -l 'environment' -d 'The environment document (img-squash\'s output; - for stdin).' -rF
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" environment-variable' -l 'environment-variable' -d 'The environment variable that holds the environment document (what the srun wrapper hands to the tasks).' -rfka ''
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" image' -l 'image' -d 'The squashfs image (standalone form, or instead of the document\'s).' -rF
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter"' -l 'mount' -d 'Add a mount: SOURCE:DESTINATION[:FLAGS], FLAGS joined with + (ro, sqsh, ...); a relative SOURCE is taken from the current directory; SOURCE tmpfs for a tmpfs, umount to unmount DESTINATION.' -rfka ''
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter"' -l 'env' -d 'Set a variable in the container: NAME=VALUE (NAME= unsets it).' -rfka ''
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" workdir' -l 'workdir' -d 'The working directory in the container.' -rfka ''
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" writable' -l 'writable' -d 'Make the root file system writable (changes are discarded at exit).'
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" no-writable' -l 'no-writable' -d 'Make the root file system writable (changes are discarded at exit).'
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" entrypoint' -l 'entrypoint' -d 'Run the image\'s Entrypoint with the command as its arguments.'
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" no-entrypoint' -l 'no-entrypoint' -d 'Run the image\'s Entrypoint with the command as its arguments.'
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter"' -l 'annotation' -d 'Set an annotation (steers the hooks): KEY=VALUE.' -rfka ''
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" root' -l 'root' -d 'Map the caller to root inside the container.'
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" name' -l 'name' -d 'Share the container under this name: the first task creates it, the others join it; %j, %s and %N stand for $SLURM_JOB_ID, $SLURM_STEP_ID and $SLURMD_NODENAME (else the short host name) (%j.%s.%N: one container per job step and node).' -rfka ''
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" join' -l 'join' -d 'Join the running container whose holder process has this pid.' -rfka ''
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" no-hooks' -l 'no-hooks' -d 'Do not run hooks.'
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" hook-timeout' -l 'hook-timeout' -d 'Seconds a hook may run before it is killed (default: HOOK_RUN_TIMEOUT, else 60).' -rfka ''
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" version' -l 'version' -d 'Show the version.'
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_positional "ns-enter" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'ns-enter' -n '__ns-enter_should_offer_completions_for_flags_or_options "ns-enter help" version' -l 'version' -d 'Show the version.'
