namespace NativeVlm.Cli;

/// <summary>
/// Rewrites a command line into what CommandLineParser reads, so that flags behave as under transformers'
/// HfArgumentParser: a long option's kebab-case spelling is an alias of its snake_case name
/// (--output-dir = --output_dir, --output-dir=x = --output_dir=x), and a boolean option given bare, at the
/// end or before another option, means true (--use_dora = --use_dora true), while --use_dora false still
/// reads its value. Only option names are rewritten, never values (a negative number stays as it is).
/// Two more, for the verbs' sake: --output names the folder on a verb whose only output flag is
/// --output_dir (stitch, merge, demo; train's TRL name), and a list option given more than once
/// (--image a.png --image b.png) reads as one with every value in order, as argparse's append action.
/// </summary>
public static class ArgumentNormalizer
{
    private const string True = "true";

    public static string[] Normalize(IReadOnlyList<string> args, IReadOnlyList<VerbCommand> verbs)
    {
        VerbCommand? verb = args.Count > 0 ? verbs.FirstOrDefault(v => v.Name == args[0]) : null;
        var normalized = new List<string>(args.Count + 4);
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (!IsLongOption(arg))
            {
                normalized.Add(arg);
                continue;
            }
            int equals = arg.IndexOf('=', StringComparison.Ordinal);
            string name = (equals < 0 ? arg[2..] : arg[2..equals]).Replace('-', '_');
            if (name == OutputAlias && verb != null && !verb.Options.ContainsKey(OutputAlias) && verb.Options.ContainsKey(OutputDirectory))
            {
                name = OutputDirectory;
            }
            normalized.Add(equals < 0 ? "--" + name : "--" + name + arg[equals..]);
            bool bare = equals < 0 && (i + 1 == args.Count || IsOption(args[i + 1]));
            if (bare && verb != null && verb.IsBoolean(name))
            {
                normalized.Add(True);
            }
        }
        return verb == null ? normalized.ToArray() : MergeRepeatedLists(normalized, verb);
    }

    private const string OutputAlias = "output", OutputDirectory = "output_dir";

    /// <summary>
    /// Every value of a list option, wherever it is repeated, moved to its first occurrence:
    /// --image a --prompt x --image b → --image a b --prompt x. Other options are left as they are, so a
    /// repeated scalar is still refused by the parser.
    /// </summary>
    private static string[] MergeRepeatedLists(List<string> args, VerbCommand verb)
    {
        var merged = new List<string>(args.Count);
        var listStarts = new Dictionary<string, int>(); // list option → index in merged just past its values
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            string name = IsLongOption(arg) ? arg[2..] : "";
            if (!verb.IsList(name))
            {
                merged.Add(arg);
                continue;
            }
            int end = i + 1;
            while (end < args.Count && !IsOption(args[end]))
            {
                end++;
            }
            List<string> values = args.GetRange(i + 1, end - i - 1);
            if (listStarts.TryGetValue(name, out int insertAt))
            {
                merged.InsertRange(insertAt, values);
                foreach (string other in listStarts.Keys.Where(k => listStarts[k] >= insertAt && k != name).ToList())
                {
                    listStarts[other] += values.Count;
                }
                listStarts[name] = insertAt + values.Count;
            }
            else
            {
                merged.Add(arg);
                merged.AddRange(values);
                listStarts[name] = merged.Count;
            }
            i = end - 1;
        }
        return merged.ToArray();
    }

    private static bool IsLongOption(string arg) => arg.Length > 2 && arg.StartsWith("--", StringComparison.Ordinal);

    /// <summary>A long option, or a short one (-h); not a negative number such as -1 or -.5.</summary>
    private static bool IsOption(string arg) =>
        IsLongOption(arg) || arg.Length >= 2 && arg[0] == '-' && char.IsLetter(arg[1]);
}
