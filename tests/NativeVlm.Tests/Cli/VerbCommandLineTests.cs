using System.Reflection;
using CommandLine;
using NativeVlm.Cli;
using Xunit;

namespace NativeVlm.Tests.Cli;

/// <summary>
/// Every verb of the console host (each [Verb] options class of its assembly, so that a verb added later is
/// covered too), through the real binary: its --help is complete, its flags follow the naming convention,
/// and a command line the parser refuses is one line naming the flag, exit 2.
/// </summary>
public class VerbCommandLineTests
{
    public static TheoryData<string> VerbNames => new(OptionsTypes.Select(t => t.GetCustomAttribute<VerbAttribute>()!.Name));

    private static IEnumerable<Type> OptionsTypes =>
        typeof(VerbCommand).Assembly.GetTypes().Where(t => t.GetCustomAttribute<VerbAttribute>() != null);

    private static Type OptionsType(string verb) => OptionsTypes.Single(t => t.GetCustomAttribute<VerbAttribute>()!.Name == verb);

    private static IEnumerable<(PropertyInfo Property, OptionAttribute Option)> Options(string verb) =>
        OptionsType(verb).GetProperties()
            .Select(p => (p, p.GetCustomAttribute<OptionAttribute>()))
            .Where(pair => pair.Item2 != null)
            .Select(pair => (pair.p, pair.Item2!));

    private static string[] Lines(string output) => output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    [Theory]
    [MemberData(nameof(VerbNames))]
    public void Verb_help_exits_zero_and_lists_every_flag_with_its_default_or_as_required(string verb)
    {
        foreach (string[] help in new[] { new[] { verb, "--help" }, ["help", verb] })
        {
            (int exitCode, string output) = CliTests.RunHost(help);

            Assert.True(exitCode == 0, output);
            foreach ((PropertyInfo property, OptionAttribute option) in Options(verb))
            {
                Assert.Contains($"--{option.LongName} ", output);
            }
        }
        List<string> undocumented = Options(verb)
            .Where(o => !(o.Option.Required || o.Option.Default != null
                          || o.Option.HelpText.Contains("default", StringComparison.OrdinalIgnoreCase)
                          || o.Option.HelpText.Contains("required", StringComparison.OrdinalIgnoreCase)))
            .Select(o => $"--{o.Option.LongName}")
            .ToList();
        Assert.True(undocumented.Count == 0, $"{verb}: the help of {string.Join(", ", undocumented)} says neither its default nor that it is required");
    }

    [Theory]
    [MemberData(nameof(VerbNames))]
    public void Flags_are_snake_case_and_booleans_take_true_or_false(string verb)
    {
        foreach ((PropertyInfo property, OptionAttribute option) in Options(verb))
        {
            Assert.Matches("^[a-z][a-z0-9_]*$", option.LongName);
            // A plain bool is CommandLineParser's switch, which cannot read --flag false.
            Assert.True(property.PropertyType != typeof(bool), $"{verb} --{option.LongName} is bool: declare it bool? so that --{option.LongName} false parses");
        }
    }

    [Theory]
    [MemberData(nameof(VerbNames))]
    public void An_unknown_flag_exits_two_with_one_line_naming_it(string verb)
    {
        (int exitCode, string output) = CliTests.RunHost(verb, "--no_such_flag", "1");

        Assert.Equal(2, exitCode);
        string line = Assert.Single(Lines(output));
        Assert.StartsWith("nativevlm: ", line);
        Assert.Contains("unknown flag --no_such_flag", line);
        Assert.EndsWith($"(nativevlm {verb} --help lists the flags)", line);
    }

    [Theory]
    [MemberData(nameof(VerbNames))]
    public void A_bad_device_exits_two_naming_the_flag_and_the_forms_it_takes(string verb)
    {
        if (!Options(verb).Any(o => o.Option.LongName == "device"))
        {
            return; // a verb that loads nothing onto a device (dataset, inspect)
        }
        foreach (string device in new[] { "gpu", "cuda:x", "cuda:-1", "cpu:0" })
        {
            (int exitCode, string output) = CliTests.RunHost([verb, .. RequiredArguments(verb), "--device", device]);

            Assert.Equal(2, exitCode);
            Assert.Equal($"nativevlm: --device {device}: expected cpu, cuda or cuda:N (N a device index, e.g. cuda:0)", Assert.Single(Lines(output)));
        }
    }

    /// <summary>Values for the verb's positional and required arguments that get it past the parser: files that do not exist.</summary>
    private static string[] RequiredArguments(string verb)
    {
        static string Value(Type type) =>
            (Nullable.GetUnderlyingType(type) ?? type) is { IsEnum: true } e ? Enum.GetNames(e)[0].ToLowerInvariant()
            : type == typeof(string) || type == typeof(IEnumerable<string>) ? "/nonexistent/x"
            : "1";
        IEnumerable<string> values = OptionsType(verb).GetProperties()
            .Select(p => (p, p.GetCustomAttribute<ValueAttribute>()))
            .Where(pair => pair.Item2 != null)
            .OrderBy(pair => pair.Item2!.Index)
            .Select(pair => Value(pair.p.PropertyType));
        IEnumerable<string> options = Options(verb).Where(o => o.Option.Required)
            .SelectMany(o => new[] { $"--{o.Option.LongName}", Value(o.Property.PropertyType) });
        return [.. values, .. options];
    }

    [Fact]
    public void Help_lists_every_verb_and_help_and_version_exit_zero()
    {
        (int exitCode, string output) = CliTests.RunHost("--help");

        Assert.True(exitCode == 0, output);
        foreach (Type options in OptionsTypes)
        {
            Assert.Contains($"  {options.GetCustomAttribute<VerbAttribute>()!.Name} ", output);
        }
        (exitCode, output) = CliTests.RunHost("--version");
        Assert.True(exitCode == 0, output);
        Assert.Matches(@"^nativevlm \d+\.\d+", output);
    }

    [Theory]
    [InlineData(new string[0], "nativevlm: no verb given (nativevlm --help lists the verbs)")]
    [InlineData(new[] { "tune" }, "nativevlm: unknown verb 'tune' (nativevlm --help lists the verbs)")]
    [InlineData(new[] { "compare", "--inputs", "i", "--expected", "e" }, "nativevlm: --model is required (nativevlm compare --help lists the flags)")]
    [InlineData(new[] { "compare", "--model", "m", "--inputs", "i", "--expected", "e", "--quant", "nf8" },
        "nativevlm: --quant 'nf8' is not one of none, nf4 (nativevlm compare --help lists the flags)")]
    [InlineData(new[] { "compare", "--model", "m", "--inputs", "i", "--expected", "e", "--rtol=abc" },
        "nativevlm: --rtol 'abc' is not a number (nativevlm compare --help lists the flags)")]
    [InlineData(new[] { "bench", "--config", "c", "--text-tokens", "2.5" },
        "nativevlm: --text_tokens '2.5' is not an integer (nativevlm bench --help lists the flags)")]
    [InlineData(new[] { "merge", "--model", "m", "--adapter", "a", "--output_dir", "o", "--force", "maybe" },
        "nativevlm: --force 'maybe' is not true or false (nativevlm merge --help lists the flags)")]
    [InlineData(new[] { "train", "dpo", "--model", "m" }, "nativevlm: --data is required (nativevlm train --help lists the flags)")]
    [InlineData(new[] { "compare", "--model", "m", "stray", "--inputs", "i", "--expected", "e" },
        "nativevlm: unexpected value 'stray' (nativevlm compare --help lists the flags)")]
    [InlineData(new[] { "train", "sft", "dpo", "--model", "m", "--data", "d1", "d2", "--max_steps", "-1" },
        "nativevlm: unexpected value 'dpo' (nativevlm train --help lists the flags)")]
    [InlineData(new[] { "train", "--data", "d", "--model", "m", "kto" },
        "nativevlm: the objective argument 'kto' is not valid (nativevlm train --help lists the flags)")]
    public void A_refused_command_line_is_one_line_naming_what_is_wrong_with_exit_two(string[] args, string expected)
    {
        (int exitCode, string output) = CliTests.RunHost(args);

        Assert.Equal(2, exitCode);
        Assert.Equal(expected, Assert.Single(Lines(output)));
    }
}
