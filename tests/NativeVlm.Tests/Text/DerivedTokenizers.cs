using System.Text;
using System.Text.Json.Nodes;

namespace NativeVlm.Tests;

/// <summary>
/// Small byte-level BPE tokenizer.json files cut from the Qwen3 fixture (the 256 byte symbols and the
/// first merges, ids renumbered the way Hugging Face's tokenizers number them), each given the pipeline
/// of another model family, so that every component is compared with Hugging Face's own implementation.
/// Also the random texts the comparisons use.
/// </summary>
internal static class DerivedTokenizers
{
    private const int MergeCount = 3000;

    /// <summary>The added tokens of the last variant with their flags ("lstrip rstrip special" ...).</summary>
    public static readonly (string Content, string Flags)[] ExtraAddedTokens =
    [
        ("<mask>", "lstrip rstrip special"),
        ("ab", "single_word"),
        ("\uFB01x", "normalized"),
        ("<|im_start|>user", "special"),
    ];

    /// <summary>Name → the JSON of a variant.</summary>
    public static readonly Dictionary<string, Func<JsonObject>> Variants = new()
    {
        ["qwen3 pipeline, merges as 'a b' strings"] = () => Cut(stringMerges: true),
        ["gpt2: ByteLevel with its regex and a prefix space"] = () =>
        {
            JsonObject t = Cut(stringMerges: false);
            t["normalizer"] = null;
            t["pre_tokenizer"] = ByteLevel(addPrefixSpace: true, useRegex: true);
            return t;
        },
        ["smollm: Digits then ByteLevel, a BOS template"] = () =>
        {
            JsonObject t = Cut(stringMerges: false);
            t["normalizer"] = null;
            t["pre_tokenizer"] = Sequence("pretokenizers", new JsonObject { ["type"] = "Digits", ["individual_digits"] = true }, ByteLevel(addPrefixSpace: false, useRegex: true));
            t["post_processor"] = Template(t, "<|endoftext|>");
            return t;
        },
        ["llama3: 1-3 digit split regex, ignore_merges, BOS and EOS in a Sequence"] = () =>
        {
            JsonObject t = Cut(stringMerges: false);
            t["normalizer"] = null;
            t["model"]!["ignore_merges"] = true;
            t["pre_tokenizer"] = Sequence("pretokenizers",
                Split(@"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+", "Isolated"),
                ByteLevel(addPrefixSpace: false, useRegex: false));
            t["post_processor"] = Sequence("processors", ByteLevel(addPrefixSpace: true, useRegex: true), Template(t, "<|im_start|>", "<|im_end|>"));
            return t;
        },
        ["added tokens with lstrip/rstrip/single_word/normalized, NFKC, every split behavior"] = () =>
        {
            JsonObject t = Cut(stringMerges: false);
            t["normalizer"] = Sequence("normalizers", new JsonObject { ["type"] = "NFKC" });
            t["pre_tokenizer"] = Sequence("pretokenizers",
                new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["String"] = " " }, ["behavior"] = "MergedWithNext", ["invert"] = false },
                Split(@"\p{P}", "MergedWithPrevious"),
                Split("[aeiou]", "Contiguous", invert: true),
                Split("x+", "Removed"),
                ByteLevel(addPrefixSpace: true, useRegex: false));
            foreach ((string content, string flags) in ExtraAddedTokens)
            {
                AddToken(t, content, flags);
            }
            return t;
        },
    };

    /// <summary>Pieces the random texts are made of: ASCII, Latin-1, CJK, Hangul, emoji, astral letters and digits, whitespace runs, special tokens.</summary>
    private static readonly string[] Pieces =
    [
        "a", "b", "Z", "the", " the", "Hello", "x", "s", "S", "'", "'s", "'S", "'ll", "'Re", "\u017F", "\u212A",
        "0", "1", "42", "12345", "\u00E9", "\u00FC", "\u00DF", "\u00D1", "\u00A0", "\u00AD", "\u00AB", "\u00BF", "\u00A9",
        "\u4F60", "\u597D", "\u4E16\u754C", "\u65E5\u672C\u8A9E", "\u30AB\u30BF\u30AB\u30CA", "\uD55C\uAD6D\uC5B4", "\u0301", "e\u0301",
        "\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200D\U0001F469\u200D\U0001F467", "\U0001F1EB\U0001F1F7", "\u2764\uFE0F",
        "\U00020BB7", "\U0001D400", "\U0001D433", "\U0001D7CE", "\U0001D7D7", "\U00010437", "\U00013000", "\U0001F130",
        " ", "  ", "    ", "\t", "\n", "\r\n", "\n\n", "\r", " \n ", "\u3000", "\u2028", "\u0085", "\u000B", "\u000C", "\u2003",
        ".", ",", "!", "?", "-", "_", "(", ")", "[", "]", "{", "}", "\"", "#", "$", "%", "&", "*", "+", "/", ":", ";",
        "<", ">", "=", "@", "\\", "^", "`", "|", "~",
        "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "<|im_start", "im_end|>", "<|", "|>",
        "<mask>", "ab", "xab", "ab_", "fix", "\uFB01x", "\uFB01", "<|im_start|>user",
    ];

    public static string RandomText(Random random, int maxPieces)
    {
        var text = new StringBuilder();
        for (int i = random.Next(maxPieces + 1); i > 0; i--)
        {
            text.Append(Pieces[random.Next(Pieces.Length)]);
        }
        return text.ToString();
    }

    public static string Write(JsonObject tokenizer, TempDirectory folder, string name)
    {
        string path = folder.Path(name);
        File.WriteAllText(path, tokenizer.ToJsonString());
        return path;
    }

    private static readonly Lazy<JsonObject> Qwen3Cut = new(CutQwen3);

    /// <summary>A copy of the cut, its merges as ["a", "b"] pairs or as "a b" strings.</summary>
    private static JsonObject Cut(bool stringMerges)
    {
        var tokenizer = Qwen3Cut.Value.DeepClone().AsObject();
        if (stringMerges)
        {
            JsonObject model = tokenizer["model"]!.AsObject();
            model["merges"] = new JsonArray(model["merges"]!.AsArray()
                .Select(m => (JsonNode)JsonValue.Create($"{m![0]!.GetValue<string>()} {m[1]!.GetValue<string>()}"))
                .ToArray());
        }
        return tokenizer;
    }

    /// <summary>The byte symbols and the first merges' results, numbered in their Qwen3 order from 0; added tokens after them.</summary>
    private static JsonObject CutQwen3()
    {
        JsonObject qwen3 = JsonNode.Parse(File.ReadAllText(Qwen3Fixture.TokenizerPath))!.AsObject();
        JsonObject model = qwen3["model"]!.AsObject();
        JsonObject vocabulary = model["vocab"]!.AsObject();
        var merges = model["merges"]!.AsArray().Take(MergeCount)
            .Select(m => (Left: m![0]!.GetValue<string>(), Right: m[1]!.GetValue<string>())).ToList();
        List<string> kept = vocabulary.Where(p => p.Key.Length == 1).Select(p => p.Key)
            .Concat(merges.Select(m => m.Left + m.Right))
            .Distinct()
            .OrderBy(token => vocabulary[token]!.GetValue<int>())
            .ToList();
        var renumbered = new JsonObject();
        for (int id = 0; id < kept.Count; id++)
        {
            renumbered[kept[id]] = id;
        }
        var cut = new JsonObject();
        foreach ((string key, JsonNode? value) in qwen3.Where(p => p.Key != "model"))
        {
            cut[key] = value?.DeepClone();
        }
        var cutModel = new JsonObject();
        foreach ((string key, JsonNode? value) in model.Where(p => p.Key is not ("vocab" or "merges")))
        {
            cutModel[key] = value?.DeepClone();
        }
        cutModel["vocab"] = renumbered;
        cutModel["merges"] = new JsonArray(merges.Select(m => (JsonNode)new JsonArray(m.Left, m.Right)).ToArray());
        cut["model"] = cutModel;
        int next = kept.Count;
        foreach (JsonNode? added in cut["added_tokens"]!.AsArray())
        {
            added!["id"] = next++;
        }
        return cut;
    }

    /// <summary>Adds a token with the id Hugging Face's tokenizers give it: its vocabulary id, else the next free one.</summary>
    private static void AddToken(JsonObject tokenizer, string content, string flags)
    {
        JsonObject vocabulary = tokenizer["model"]!["vocab"]!.AsObject();
        JsonArray added = tokenizer["added_tokens"]!.AsArray();
        int id = vocabulary.TryGetPropertyValue(content, out JsonNode? existing)
            ? existing!.GetValue<int>()
            : Math.Max(vocabulary.Count, added.Select(a => a!["id"]!.GetValue<int>() + 1).DefaultIfEmpty(0).Max());
        string[] set = flags.Split(' ');
        added.Add(new JsonObject
        {
            ["id"] = id,
            ["content"] = content,
            ["single_word"] = set.Contains("single_word"),
            ["lstrip"] = set.Contains("lstrip"),
            ["rstrip"] = set.Contains("rstrip"),
            ["normalized"] = set.Contains("normalized"),
            ["special"] = set.Contains("special"),
        });
    }

    public static int AddedTokenId(JsonObject tokenizer, string content) =>
        tokenizer["added_tokens"]!.AsArray().First(a => a!["content"]!.GetValue<string>() == content)!["id"]!.GetValue<int>();

    private static JsonObject ByteLevel(bool addPrefixSpace, bool useRegex) => new()
    {
        ["type"] = "ByteLevel", ["add_prefix_space"] = addPrefixSpace, ["trim_offsets"] = true, ["use_regex"] = useRegex,
    };

    private static JsonObject Split(string regex, string behavior, bool invert = false) => new()
    {
        ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = regex }, ["behavior"] = behavior, ["invert"] = invert,
    };

    private static JsonObject Sequence(string listName, params JsonNode[] items) => new()
    {
        ["type"] = "Sequence", [listName] = new JsonArray(items),
    };

    /// <summary>A TemplateProcessing that puts <paramref name="around"/>[0] before the text and [1] (if given) after it.</summary>
    private static JsonObject Template(JsonObject tokenizer, params string[] around)
    {
        JsonObject Special(string token) => new() { ["SpecialToken"] = new JsonObject { ["id"] = token, ["type_id"] = 0 } };
        var single = new JsonArray(Special(around[0]), new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } });
        if (around.Length > 1)
        {
            single.Add(Special(around[1]));
        }
        var specialTokens = new JsonObject();
        foreach (string token in around)
        {
            specialTokens[token] = new JsonObject { ["id"] = token, ["ids"] = new JsonArray(AddedTokenId(tokenizer, token)), ["tokens"] = new JsonArray(token) };
        }
        return new JsonObject { ["type"] = "TemplateProcessing", ["single"] = single, ["pair"] = new JsonArray(), ["special_tokens"] = specialTokens };
    }
}
