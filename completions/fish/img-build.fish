function __img-build_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __img-build_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __img-build_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __img-build_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __img-build_parse_tokens -S
    set -l unparsed_tokens (__img-build_tokens -pc)
    switch $unparsed_tokens[1]
    case 'img-build'
        __img-build_parse_subcommand 1 'builder=' 'build-arg=+' 'builder-arg=+' 'cache=' 'force' 'q/quiet' 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'help'
            __img-build_parse_subcommand -r 1 'version'
        end
    end
end

function __img-build_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __img-build_parse_subcommand -S -a positional_count
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

function __img-build_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __img-build_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__img-build_tokens -p)
    if test -z "$(__img-build_tokens -t)"
        set -l index (count (__img-build_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'img-build' -f
complete -c 'img-build' -n '__img-build_should_offer_completions_for_positional "img-build" -eq 1' -F
complete -c 'img-build' -n '__img-build_should_offer_completions_for_flags_or_options "img-build" builder' -l 'builder' -d 'The builder: ch-image, podman, buildah, or a path to one (default: $TOOLBOX_BUILDER, else the first on PATH).' -rfka ''
complete -c 'img-build' -n '__img-build_should_offer_completions_for_flags_or_options "img-build"' -l 'build-arg' -d 'A build argument NAME=VALUE for the builder (repeatable; part of the cache key).' -rfka ''
complete -c 'img-build' -n '__img-build_should_offer_completions_for_flags_or_options "img-build"' -l 'builder-arg' -d 'An option for the builder\'s build command, such as --force for ch-image (repeatable; default: $TOOLBOX_BUILDER_ARGS, split on spaces; part of the cache key).' -rfka ''
complete -c 'img-build' -n '__img-build_should_offer_completions_for_flags_or_options "img-build" cache' -l 'cache' -d 'The cache directory.' -rfa '(__img-build_complete_directories)'
complete -c 'img-build' -n '__img-build_should_offer_completions_for_flags_or_options "img-build" force' -l 'force' -d 'Build even if an image was built before for the same key.'
complete -c 'img-build' -n '__img-build_should_offer_completions_for_flags_or_options "img-build" q quiet' -l 'quiet' -s 'q' -d 'No progress messages (the builder\'s output still goes to stderr).'
complete -c 'img-build' -n '__img-build_should_offer_completions_for_flags_or_options "img-build" version' -l 'version' -d 'Show the version.'
complete -c 'img-build' -n '__img-build_should_offer_completions_for_flags_or_options "img-build" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'img-build' -n '__img-build_should_offer_completions_for_positional "img-build" -eq 2' -fa 'help' -d 'Show subcommand help information.'
complete -c 'img-build' -n '__img-build_should_offer_completions_for_flags_or_options "img-build help" version' -l 'version' -d 'Show the version.'
