#!/usr/bin/env bash
# Kaldi-style option parsing, sourced by a script after it sets its defaults:
#   --foo-bar VALUE or --foo-bar=VALUE sets the existing variable foo_bar; --help prints
#   $help_message. Unknown options are an error (a typo must not be silently ignored).
# Parsing stops at the first argument that is not an option; the rest stay in "$@".

while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            printf '%s\n' "${help_message:-no help available}"
            exit 0 ;;
        --*=*)
            _po_name="${1%%=*}"; _po_value="${1#*=}"; shift ;;
        --*)
            if [ $# -lt 2 ]; then
                echo "$0: option $1 needs a value (--help lists the options)" >&2
                exit 1
            fi
            _po_name="$1"; _po_value="$2"; shift 2 ;;
        *) break ;;
    esac
    _po_var="${_po_name#--}"
    _po_var="${_po_var//-/_}"
    if [[ ! "${_po_var}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!_po_var+set}" ]; then
        echo "$0: unknown option ${_po_name} (--help lists the options)" >&2
        exit 1
    fi
    printf -v "${_po_var}" '%s' "${_po_value}"
done
unset _po_name _po_value _po_var
true
