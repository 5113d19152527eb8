function __edf-expand_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __edf-expand_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __edf-expand_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __edf-expand_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __edf-expand_parse_tokens -S
    set -l unparsed_tokens (__edf-expand_tokens -pc)
    switch $unparsed_tokens[1]
    case 'edf-expand'
        __edf-expand_parse_subcommand 1 'check' 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'help'
            __edf-expand_parse_subcommand -r 1 'version'
        end
    end
end

function __edf-expand_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __edf-expand_parse_subcommand -S -a positional_count
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

function __edf-expand_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __edf-expand_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__edf-expand_tokens -p)
    if test -z "$(__edf-expand_tokens -t)"
        set -l index (count (__edf-expand_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'edf-expand' -f
complete -c 'edf-expand' -n '__edf-expand_should_offer_completions_for_positional "edf-expand" -eq 1' -fa '(set -l exts \'toml\' \'json\';for p in (string match -e -- \'*/\' (commandline -t);or printf \n)*.{$exts};printf %s\n $p;end;__fish_complete_directories (commandline -t) \'\')'
complete -c 'edf-expand' -n '__edf-expand_should_offer_completions_for_flags_or_options "edf-expand" check' -l 'check' -d 'Only validate: print nothing on success, every error otherwise.'
complete -c 'edf-expand' -n '__edf-expand_should_offer_completions_for_flags_or_options "edf-expand" version' -l 'version' -d 'Show the version.'
complete -c 'edf-expand' -n '__edf-expand_should_offer_completions_for_flags_or_options "edf-expand" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'edf-expand' -n '__edf-expand_should_offer_completions_for_positional "edf-expand" -eq 2' -fa 'help' -d 'Show subcommand help information.'
complete -c 'edf-expand' -n '__edf-expand_should_offer_completions_for_flags_or_options "edf-expand help" version' -l 'version' -d 'Show the version.'
