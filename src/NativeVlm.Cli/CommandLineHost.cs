using CommandLine;
using CommandLine.Text;
using NativeVlm.Interop;
using NativeVlm.IO;
using NativeVlm.Models;

namespace NativeVlm.Cli;

/// <summary>
/// Parses a command line against the verbs and runs the one it names. --help, VERB --help, help VERB and
/// --version print to stdout and exit 0. Every other failure is one line on stderr and exit 2: a command
/// line CommandLineParser refuses (unknown flag, missing required flag, a value of the wrong type) names
/// the flag and points to the verb's --help, instead of CommandLineParser's default of printing the whole
/// help; a command's own error (a bad value, a missing file) is its message.
/// </summary>
public static class CommandLineHost
{
    private const int BadInputExitCode = 2;

    /// <summary>Help lines are wrapped at this width (CommandLineParser's default is the console's, 80 when redirected).</summary>
    private const int HelpWidth = 100;

    public static int Run(string[] args, IReadOnlyList<VerbCommand> verbs)
    {
        string[] normalized = ArgumentNormalizer.Normalize(args, verbs);
        using var parser = new Parser(settings =>
        {
            settings.HelpWriter = null; // help and errors are written below
            settings.CaseInsensitiveEnumValues = true;
        });
        ParserResult<object> result = parser.ParseArguments(normalized, verbs.Select(v => v.OptionsType).ToArray());
        return result.MapResult(
            options => RunCommand(verbs.Single(v => v.OptionsType == options.GetType()), options, normalized),
            errors => Refused(result, errors.ToList(), normalized, verbs));
    }

    private static int RunCommand(VerbCommand verb, object options, string[] args)
    {
        // CommandLineParser ignores a value no positional argument takes; here it is an error, as a typo
        // would otherwise pass unnoticed.
        if (Positionals(verb, args).Skip(verb.Values.Count).FirstOrDefault() is { } stray)
        {
            Console.Error.WriteLine($"nativevlm: unexpected value '{stray}' ({Hint(verb)})");
            return BadInputExitCode;
        }
        try
        {
            return verb.Run(options);
        }
        catch (Exception e) when (e is NvlmException or ArgumentException or DllNotFoundException or IOException
                                      or SafeTensorsException or ConfigException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"nativevlm: {e.Message}");
            return BadInputExitCode;
        }
    }

    private static int Refused(ParserResult<object> result, List<Error> errors, string[] args, IReadOnlyList<VerbCommand> verbs)
    {
        if (errors.Any(e => e.Tag is ErrorType.HelpRequestedError or ErrorType.HelpVerbRequestedError or ErrorType.VersionRequestedError))
        {
            Console.WriteLine(HelpText.AutoBuild(result, help =>
            {
                help.AdditionalNewLineAfterOption = false;
                help.MaximumDisplayWidth = HelpWidth;
                return help;
            }, HelpWidth));
            return 0;
        }
        VerbCommand? verb = verbs.FirstOrDefault(v => v.Name == args.FirstOrDefault());
        // One reason per flag: a positional value that is not valid is also reported as missing.
        IEnumerable<Error> first = errors.DistinctBy(e => e switch
        {
            NamedError named => $"name {named.NameInfo.NameText}",
            TokenError token => $"token {token.Token}",
            _ => e.Tag.ToString(),
        });
        Console.Error.WriteLine($"nativevlm: {string.Join("; ", first.Select(e => Reason(e, verb, args)))} ({Hint(verb)})");
        return BadInputExitCode;
    }

    private static string Hint(VerbCommand? verb) =>
        verb == null ? "nativevlm --help lists the verbs" : $"nativevlm {verb.Name} --help lists the flags";

    /// <summary>
    /// The tokens after the verb that are neither flags nor flags' values. A sequence flag (--data a b)
    /// takes every token up to the next flag; after <see cref="ArgumentNormalizer"/>, every other flag,
    /// boolean included, takes one (or none, written --flag=value).
    /// </summary>
    private static IEnumerable<string> Positionals(VerbCommand verb, string[] args)
    {
        for (int i = 1; i < args.Length; i++)
        {
            string arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                yield return arg;
                continue;
            }
            if (arg.Contains('=', StringComparison.Ordinal) || !verb.Options.ContainsKey(arg[2..]))
            {
                continue;
            }
            bool sequence = verb.IsList(arg[2..]);
            do
            {
                i++;
            } while (sequence && i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal));
        }
    }

    /// <summary>What is wrong, naming the flag (or the verb, or the positional value) and the value given.</summary>
    private static string Reason(Error error, VerbCommand? verb, string[] args) => error switch
    {
        NoVerbSelectedError => "no verb given",
        BadVerbSelectedError bad => $"unknown verb '{bad.Token}'",
        UnknownOptionError unknown => $"unknown flag --{unknown.Token}",
        MissingRequiredOptionError missing => $"{Name(missing.NameInfo, verb)} is required",
        MissingValueOptionError missing => $"{Name(missing.NameInfo, verb)} needs a value",
        SequenceOutOfRangeError range => $"{Name(range.NameInfo, verb)} needs at least one value",
        RepeatedOptionError repeated => $"{Name(repeated.NameInfo, verb)} is given more than once",
        BadFormatConversionError bad => BadValue(bad.NameInfo, verb, args),
        SetValueExceptionError set => $"{Name(set.NameInfo, verb)} {set.Value}: {set.Exception.Message}",
        BadFormatTokenError bad => $"cannot read '{bad.Token}'",
        _ => error.Tag.ToString(),
    };

    /// <summary>--flag, or for a positional value (NameInfo without names) its meta name.</summary>
    private static string Name(NameInfo name, VerbCommand? verb) =>
        name.LongName.Length > 0 ? $"--{name.LongName}"
        : verb?.Values.Count > 0 ? $"the {string.Join(" or ", verb.Values)} argument"
        : "a value";

    private static string BadValue(NameInfo name, VerbCommand? verb, string[] args)
    {
        if (name.LongName.Length == 0 || verb == null || !verb.Options.TryGetValue(name.LongName, out Type? type))
        {
            // A positional value (train's objective).
            return $"{Name(name, verb)} '{(verb == null ? null : Positionals(verb, args).FirstOrDefault())}' is not valid";
        }
        return $"--{name.LongName} '{ValueGiven(args, name.LongName)}' is not {Expected(type)}";
    }

    private static string? ValueGiven(string[] args, string option)
    {
        for (int i = 0; i < args.Length; i++)
        {
            if (args[i] == $"--{option}")
            {
                return args.ElementAtOrDefault(i + 1);
            }
            if (args[i].StartsWith($"--{option}=", StringComparison.Ordinal))
            {
                return args[i][(option.Length + 3)..];
            }
        }
        return null;
    }

    private static string Expected(Type type)
    {
        Type value = Nullable.GetUnderlyingType(type) ?? type;
        return value.IsEnum ? $"one of {string.Join(", ", Enum.GetNames(value).Select(n => n.ToLowerInvariant()))}"
            : value == typeof(bool) ? "true or false"
            : value == typeof(int) || value == typeof(long) ? "an integer"
            : value == typeof(double) || value == typeof(float) ? "a number"
            : $"a {value.Name}";
    }
}
