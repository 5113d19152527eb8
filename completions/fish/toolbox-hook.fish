function __toolbox-hook_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __toolbox-hook_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __toolbox-hook_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __toolbox-hook_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __toolbox-hook_parse_tokens -S
    set -l unparsed_tokens (__toolbox-hook_tokens -pc)
    switch $unparsed_tokens[1]
    case 'toolbox-hook'
        __toolbox-hook_parse_subcommand 0 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'inject'
            __toolbox-hook_parse_subcommand -r 1 'root=' 'name=' 'ldcache=' 'optional' 'if-missing' 'dependencies' 'needed-by=+' 'abi=' 'compat32' 'ldconfig=' 'v/verbose' 'version' 'h/help'
        case 'service'
            __toolbox-hook_parse_subcommand -r 1 'root=' 'log=' 'version' 'h/help'
        case 'driver-versions'
            __toolbox-hook_parse_subcommand 0 'ldcache=' 'version' 'h/help'
        case 'help'
            __toolbox-hook_parse_subcommand -r 1 'version'
        end
    end
end

function __toolbox-hook_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __toolbox-hook_parse_subcommand -S -a positional_count
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

function __toolbox-hook_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __toolbox-hook_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__toolbox-hook_tokens -p)
    if test -z "$(__toolbox-hook_tokens -t)"
        set -l index (count (__toolbox-hook_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'toolbox-hook' -f
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook" version' -l 'version' -d 'Show the version.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_positional "toolbox-hook" -eq 1' -fa 'inject' -d 'Bring host shared libraries into the container and refresh its linker cache.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_positional "toolbox-hook" -eq 1' -fa 'service' -d 'Start a program inside the container that runs as long as the container.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_positional "toolbox-hook" -eq 1' -fa 'driver-versions' -d 'Print the host\'s NVIDIA driver version and the CUDA version it supports.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_positional "toolbox-hook" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook inject" root' -l 'root' -d 'The container\'s root file system (default: $ENROOT_ROOTFS).' -rfa '(__toolbox-hook_complete_directories)'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook inject" name' -l 'name' -d 'The hook\'s name (the directory /opt/toolbox/NAME/lib in the container).' -rfka ''
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook inject" ldcache' -l 'ldcache' -d 'The host\'s linker cache, for libraries given by name.' -rF
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook inject" optional' -l 'optional' -d 'Skip names that are not in the host\'s linker cache instead of failing.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook inject" if-missing' -l 'if-missing' -d 'Only add libraries the image lacks; never replace the image\'s.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook inject" dependencies' -l 'dependencies' -d 'Also add the libraries these load (RUNPATH, then the host\'s linker cache), when the image lacks them.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook inject"' -l 'needed-by' -d 'Add the libraries this host program loads, when the image lacks them (repeatable).' -rF
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook inject" abi' -l 'abi' -d 'Check against the image\'s library of the same name first: major, full or strict.' -rfka 'major full strict'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook inject" compat32' -l 'compat32' -d 'The 32-bit versions (i386 on x86_64), added into /opt/toolbox/NAME/lib32.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook inject" ldconfig' -l 'ldconfig' -d 'The host\'s glibc ldconfig (default: $TOOLBOX_LDCONFIG, else /sbin/ldconfig.real or /sbin/ldconfig).' -rF
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook inject" v verbose' -l 'verbose' -s 'v' -d 'Say what is replaced, added and skipped.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_positional "toolbox-hook inject" -ge 1' -F
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook inject" version' -l 'version' -d 'Show the version.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook inject" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook service" root' -l 'root' -d 'The container\'s root file system (default: $ENROOT_ROOTFS).' -rfa '(__toolbox-hook_complete_directories)'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook service" log' -l 'log' -d 'A file inside the container for the program\'s output (default: none).' -rfka ''
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook service" version' -l 'version' -d 'Show the version.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook service" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook driver-versions" ldcache' -l 'ldcache' -d 'The host\'s linker cache.' -rF
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook driver-versions" version' -l 'version' -d 'Show the version.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook driver-versions" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'toolbox-hook' -n '__toolbox-hook_should_offer_completions_for_flags_or_options "toolbox-hook help" version' -l 'version' -d 'Show the version.'
