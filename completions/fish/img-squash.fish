function __img-squash_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __img-squash_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __img-squash_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __img-squash_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __img-squash_parse_tokens -S
    set -l unparsed_tokens (__img-squash_tokens -pc)
    switch $unparsed_tokens[1]
    case 'img-squash'
        __img-squash_parse_subcommand -r 1 'o/output=' 'compression=' 'level=' 'block-size=' 'threads=' 'keep-owners' 'force' 'q/quiet' 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'help'
            __img-squash_parse_subcommand -r 1 'version'
        end
    end
end

function __img-squash_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __img-squash_parse_subcommand -S -a positional_count
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

function __img-squash_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __img-squash_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__img-squash_tokens -p)
    if test -z "$(__img-squash_tokens -t)"
        set -l index (count (__img-squash_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'img-squash' -f
complete -c 'img-squash' -n '__img-squash_should_offer_completions_for_positional "img-squash" -ge 1' -F
complete -c 'img-squash' -n '__img-squash_should_offer_completions_for_flags_or_options "img-squash" o output' -l 'output' -s 'o' -d 'Write the image here instead of the image store.' -rF
complete -c 'img-squash' -n '__img-squash_should_offer_completions_for_flags_or_options "img-squash" compression' -l 'compression' -d 'Compression: zstd, gzip or none.' -rfka 'zstd gzip none'
complete -c 'img-squash' -n '__img-squash_should_offer_completions_for_flags_or_options "img-squash" level' -l 'level' -d 'Compression level (zstd 1-22, default 3; gzip 1-9, default 6).' -rfka ''
complete -c 'img-squash' -n '__img-squash_should_offer_completions_for_flags_or_options "img-squash" block-size' -l 'block-size' -d 'Data block size, a power of two from 4K to 1M.' -rfka ''
complete -c 'img-squash' -n '__img-squash_should_offer_completions_for_flags_or_options "img-squash" threads' -l 'threads' -d 'Compression threads (default: ENROOT_MAX_PROCESSORS, else one per core this process may run on).' -rfka ''
complete -c 'img-squash' -n '__img-squash_should_offer_completions_for_flags_or_options "img-squash" keep-owners' -l 'keep-owners' -d 'Keep the owners recorded in the layers (default: every file owned by root, as enroot does).'
complete -c 'img-squash' -n '__img-squash_should_offer_completions_for_flags_or_options "img-squash" force' -l 'force' -d 'Build the image even if the store holds one for the same manifest.'
complete -c 'img-squash' -n '__img-squash_should_offer_completions_for_flags_or_options "img-squash" q quiet' -l 'quiet' -s 'q' -d 'No progress messages.'
complete -c 'img-squash' -n '__img-squash_should_offer_completions_for_flags_or_options "img-squash" version' -l 'version' -d 'Show the version.'
complete -c 'img-squash' -n '__img-squash_should_offer_completions_for_flags_or_options "img-squash" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'img-squash' -n '__img-squash_should_offer_completions_for_positional "img-squash" -eq 2' -fa 'help' -d 'Show subcommand help information.'
complete -c 'img-squash' -n '__img-squash_should_offer_completions_for_flags_or_options "img-squash help" version' -l 'version' -d 'Show the version.'
