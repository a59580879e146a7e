using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using NativeVlm.Models;

namespace NativeVlm.Adapters;

/// <summary>
/// LoraConfig.target_modules as PEFT v0.13.2 reads it (tuners_utils.check_target_module_exists):
/// a list names modules by suffix (a module matches when its name equals an entry or ends with
/// "." + the entry, so ["q_proj", …] adapts the vision tower's q_proj too), a string is a regular
/// expression that must match the whole name, and the string "all-linear" means every Linear
/// module but the LM head (which is no Nn.Linear here). Stricter than PEFT, which only fails when
/// nothing at all matches: every list entry must match some module.
/// </summary>
public sealed class TargetModules
{
    public const string AllLinear = "all-linear";

    private readonly Regex? _pattern;

    private TargetModules(IReadOnlyList<string>? names, string? pattern)
    {
        Names = names;
        Pattern = pattern;
        if (pattern != null && !IsAllLinear)
        {
            // re.fullmatch: the whole name, whatever alternations the pattern holds.
            _pattern = new Regex($@"\A(?:{pattern})\z", RegexOptions.CultureInvariant);
        }
    }

    /// <summary>The list form, in the file's order (PEFT holds a set: the order means nothing).</summary>
    public IReadOnlyList<string>? Names { get; }

    /// <summary>The string form: a regular expression, or <see cref="AllLinear"/>.</summary>
    public string? Pattern { get; }

    private bool IsAllLinear => string.Equals(Pattern, AllLinear, StringComparison.OrdinalIgnoreCase);

    public static TargetModules FromNames(params IEnumerable<string> names)
    {
        string[] list = names.ToArray();
        if (list.Length == 0 || list.Any(string.IsNullOrEmpty))
        {
            throw new ArgumentException("target_modules needs at least one non-empty module name", nameof(names));
        }
        return new TargetModules(list, null);
    }

    public static TargetModules FromPattern(string pattern) => new(null, pattern);

    /// <summary>
    /// lora_target_modules as a training argument gives it, a list: <see cref="AllLinear"/> alone is
    /// PEFT's string form (a list holding it would name a module "all-linear"), anything else names modules.
    /// </summary>
    public static TargetModules FromArgument(IReadOnlyList<string> modules) =>
        modules is [string only] && string.Equals(only, AllLinear, StringComparison.OrdinalIgnoreCase)
            ? FromPattern(only)
            : FromNames(modules);

    public bool Matches(string moduleName)
    {
        if (Names != null)
        {
            return Names.Any(target => MatchesSuffix(moduleName, target));
        }
        return IsAllLinear || _pattern!.IsMatch(moduleName);
    }

    private static bool MatchesSuffix(string moduleName, string target) =>
        moduleName == target || moduleName.EndsWith("." + target, StringComparison.Ordinal);

    /// <summary>
    /// The names (in the given order) that the targets select. A list entry or a pattern that
    /// selects none is an error that lists every module name there is.
    /// </summary>
    /// <param name="source">Names the config in the error (its file).</param>
    public IReadOnlyList<string> Select(IReadOnlyList<string> moduleNames, string source)
    {
        string[] unmatched = Names != null
            ? Names.Where(target => !moduleNames.Any(name => MatchesSuffix(name, target))).ToArray()
            : moduleNames.Any(Matches) ? [] : [Pattern!];
        if (unmatched.Length > 0)
        {
            string what = Names != null
                ? $"target_modules {string.Join(", ", unmatched.Select(t => $"'{t}'"))} match{(unmatched.Length == 1 ? "es" : "")} no module by name or suffix"
                : $"target_modules pattern '{Pattern}' matches no module name as a whole";
            throw new ConfigException(source, "target_modules",
                $"{source}: {what}; the model's Linear modules are: {string.Join(", ", moduleNames)}");
        }
        return moduleNames.Where(Matches).ToList();
    }

    internal JsonNode ToJson() => Names != null
        ? new JsonArray(Names.Select(n => (JsonNode?)JsonValue.Create(n)).ToArray())
        : JsonValue.Create(Pattern!);
}
