using CommandLine;
using CommandLine.Text;

namespace NativeVlm.Cli;

/// <summary>
/// The examples of a verb's --help ([Usage] properties): the sample's flags, those left at their defaults
/// omitted. A flag is at its default when the property equals its [Option]'s Default, which is why the
/// options classes also give the default as the property's initializer.
/// </summary>
public static class UsageExample
{
    private static readonly UnParserSettings SkipDefaults = new() { SkipDefault = true };

    public static Example Of(string text, object sample) => new(text, SkipDefaults, sample);
}
