using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace NativeVlm.Text;

/// <summary>
/// A byte-level BPE tokenizer read from a Hugging Face tokenizer.json (Qwen2/3, GPT-2, SmolLM, Llama 3
/// style), encoding and decoding as Hugging Face's Rust tokenizers do:
/// added tokens split out of the raw text → normalizer (NFC ...) → pre-tokenizer (Split regex over code
/// points, Digits, ByteLevel) → BPE merges (Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/>) →
/// post-processor (TemplateProcessing's special tokens). truncation and padding in the file are ignored,
/// as transformers' fast tokenizers ignore them: batching decides lengths.
/// A component outside that set is a <see cref="TokenizerException"/> naming it.
/// </summary>
public sealed class ByteLevelBpeTokenizer
{
    public const string FileName = "tokenizer.json";

    private readonly BpeTokenizer _bpe;
    private readonly Dictionary<string, int> _vocabulary;
    private readonly Dictionary<int, string> _vocabularyById;
    private readonly bool _ignoreMerges;
    private readonly UnicodeNormalizer _normalizer;
    private readonly IReadOnlyList<PreTokenizerStep> _preTokenizer;
    private readonly AddedVocabulary _addedVocabulary;
    private readonly Dictionary<int, AddedToken> _addedById;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly int[] _prefixIds;
    private readonly int[] _suffixIds;

    private ByteLevelBpeTokenizer(TokenizerJson root)
    {
        TokenizerJson model = root.Required("model");
        model.Type("BPE");
        RejectUnsupportedBpeOptions(model);
        _ignoreMerges = model.Bool("ignore_merges", false);
        _vocabulary = ReadVocabulary(model.Required("vocab"));
        _vocabularyById = _vocabulary.ToDictionary(pair => pair.Value, pair => pair.Key);
        _bpe = CreateBpe(model, _vocabulary);

        _normalizer = new UnicodeNormalizer(root.Field("normalizer") is { IsNull: false } normalizer ? ReadNormalizer(normalizer) : []);
        TokenizerJson preTokenizer = root.Field("pre_tokenizer") is { IsNull: false } p
            ? p
            : throw root.Error("has no pre_tokenizer: a byte-level BPE needs a ByteLevel step");
        _preTokenizer = ReadPreTokenizer(preTokenizer);
        if (!_preTokenizer.Any(step => step is ByteLevelStep))
        {
            throw preTokenizer.Error("has no ByteLevel step: only byte-level BPE tokenizers are supported");
        }
        TokenizerJson decoder = root.Field("decoder") is { IsNull: false } d
            ? d
            : throw root.Error("has no decoder: a byte-level BPE needs the ByteLevel decoder");
        decoder.Type("ByteLevel");

        List<AddedToken> added = root.Field("added_tokens") is { IsNull: false } a ? ReadAddedTokens(a, _vocabulary) : [];
        AddedTokens = added;
        _addedById = added.ToDictionary(t => t.Id);
        _addedByContent = added.ToDictionary(t => t.Content);
        _addedVocabulary = new AddedVocabulary(added, _normalizer.Normalize);

        (_prefixIds, _suffixIds) = root.Field("post_processor") is { IsNull: false } post ? ReadPostProcessor(post) : ([], []);
    }

    /// <summary>Reads <paramref name="path"/> (a tokenizer.json, or the folder holding one).</summary>
    public static ByteLevelBpeTokenizer Load(string path)
    {
        string file = Directory.Exists(path) ? System.IO.Path.Combine(path, FileName) : path;
        using FileStream stream = File.OpenRead(file);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(stream);
        }
        catch (JsonException e)
        {
            throw new TokenizerException(file, "", $"{file}: not valid JSON: {e.Message}");
        }
        using (document)
        {
            return new ByteLevelBpeTokenizer(new TokenizerJson(file, "", document.RootElement));
        }
    }

    /// <summary>added_tokens, in file order.</summary>
    public IReadOnlyList<AddedToken> AddedTokens { get; }

    /// <summary>
    /// The ids of <paramref name="text"/>; with <paramref name="addSpecialTokens"/> the post-processor's
    /// (a BOS, for Llama 3) are added as Hugging Face's encode(add_special_tokens=True) does.
    /// </summary>
    public int[] Encode(string text, bool addSpecialTokens = true)
    {
        RejectUnpairedSurrogates(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens)
        {
            ids.AddRange(_prefixIds);
        }
        var pieces = new List<string>();
        var split = new List<string>();
        foreach (AddedVocabulary.Segment segment in _addedVocabulary.Split(text))
        {
            if (segment.TokenId is int id)
            {
                ids.Add(id);
                continue;
            }
            pieces.Clear();
            pieces.Add(segment.Text);
            foreach (PreTokenizerStep step in _preTokenizer)
            {
                split.Clear();
                pieces.ForEach(piece => step.Split(piece, split));
                (pieces, split) = (split, pieces);
            }
            pieces.ForEach(word => EncodeWord(word, ids));
        }
        if (addSpecialTokens)
        {
            ids.AddRange(_suffixIds);
        }
        return [.. ids];
    }

    /// <summary>
    /// The text of <paramref name="ids"/> as Hugging Face's decode with the ByteLevel decoder: bytes of
    /// all tokens joined, invalid UTF-8 replaced by U+FFFD.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            if (_addedById.TryGetValue(id, out AddedToken? added))
            {
                if (!(skipSpecialTokens && added.Special))
                {
                    ByteLevelAlphabet.AppendBytes(added.Content, bytes);
                }
                continue;
            }
            string token = _vocabularyById.TryGetValue(id, out string? t)
                ? t
                : throw new ArgumentOutOfRangeException(nameof(ids), id, "no token has this id");
            ByteLevelAlphabet.AppendBytes(token, bytes);
        }
        return Encoding.UTF8.GetString([.. bytes]);
    }

    /// <summary>The id of an added token or of a vocabulary entry (in the byte-level alphabet: " the" is "Ġthe").</summary>
    public int? TokenToId(string token) =>
        _addedByContent.TryGetValue(token, out AddedToken? added) ? added.Id
        : _vocabulary.TryGetValue(token, out int id) ? id
        : null;

    public string? IdToToken(int id) =>
        _addedById.TryGetValue(id, out AddedToken? added) ? added.Content
        : _vocabularyById.GetValueOrDefault(id);

    private void EncodeWord(string word, List<int> ids)
    {
        if (_ignoreMerges && _vocabulary.TryGetValue(word, out int whole))
        {
            ids.Add(whole);
            return;
        }
        ids.AddRange(_bpe.EncodeToIds(word, considerPreTokenization: false, considerNormalization: false));
    }

    private static void RejectUnpairedSurrogates(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(text[i]))
            {
                throw new ArgumentException($"the text has an unpaired surrogate U+{(int)text[i]:X4} at index {i}: it is not Unicode text", nameof(text));
            }
        }
    }

    private static void RejectUnsupportedBpeOptions(TokenizerJson model)
    {
        if (model.Field("dropout") is { IsNull: false } dropout && !(dropout.Value.TryGetDouble(out double rate) && rate == 0))
        {
            throw dropout.Error("is set: BPE dropout (random merges) is not supported");
        }
        if (model.Bool("byte_fallback", false))
        {
            throw model.Required("byte_fallback").Error("is true: byte fallback is for SentencePiece-style BPE, not supported");
        }
        foreach (string affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
        {
            if (model.OptionalString(affix) is string value)
            {
                throw model.Required(affix).Error($"= '{value}' is not supported (a byte-level BPE has none)");
            }
        }
    }

    private static Dictionary<string, int> ReadVocabulary(TokenizerJson vocab)
    {
        var vocabulary = new Dictionary<string, int>();
        foreach ((string token, TokenizerJson id) in vocab.Properties())
        {
            vocabulary[token] = id.Int();
        }
        return vocabulary;
    }

    private static BpeTokenizer CreateBpe(TokenizerJson model, Dictionary<string, int> vocabulary)
    {
        var merges = new List<string>();
        foreach (TokenizerJson merge in model.Required("merges").Items())
        {
            (string left, string right) = merge.Value.ValueKind == JsonValueKind.Array
                ? ReadMergePair(merge)
                : SplitMergeString(merge);
            // BpeOptions takes merges as "left right" strings; byte-level tokens never hold a space.
            if (left.Contains(' ') || right.Contains(' '))
            {
                throw merge.Error("has a space inside a token, which Microsoft.ML.Tokenizers' merge format cannot express");
            }
            merges.Add($"{left} {right}");
        }
        var options = new BpeOptions(vocabulary)
        {
            Merges = merges,
            UnknownToken = model.OptionalString("unk_token"),
            FuseUnknownTokens = model.Bool("fuse_unk", false),
        };
        try
        {
            return BpeTokenizer.Create(options);
        }
        catch (InvalidOperationException e)
        {
            throw model.Error($"cannot be built: {e.Message}");
        }
    }

    private static (string Left, string Right) ReadMergePair(TokenizerJson merge)
    {
        TokenizerJson[] parts = merge.Items().ToArray();
        return parts.Length == 2 ? (parts[0].String(), parts[1].String()) : throw merge.Error($"has {parts.Length} parts, not 2");
    }

    private static (string Left, string Right) SplitMergeString(TokenizerJson merge)
    {
        string[] parts = merge.String().Split(' ');
        return parts.Length == 2 ? (parts[0], parts[1]) : throw merge.Error($"= '{merge.String()}' is not two tokens separated by one space");
    }

    /// <summary>
    /// added_tokens, checked against the ids Hugging Face's tokenizers give them on loading (they do not
    /// take the file's): a token of the vocabulary keeps its vocabulary id, any other takes the next id
    /// after the vocabulary and the added tokens before it. A file that disagrees is refused rather than
    /// encoded differently from transformers.
    /// </summary>
    private static List<AddedToken> ReadAddedTokens(TokenizerJson list, Dictionary<string, int> vocabulary)
    {
        var tokens = new List<AddedToken>();
        var seen = new HashSet<string>();
        int? maxAssigned = null;
        foreach (TokenizerJson item in list.Items())
        {
            AddedToken token = ReadAddedToken(item);
            if (token.Content.Length == 0)
            {
                throw item.Error("has an empty content");
            }
            if (!seen.Add(token.Content))
            {
                throw item.Error($"repeats the added token '{token.Content}'");
            }
            int expected = vocabulary.TryGetValue(token.Content, out int id) ? id
                : maxAssigned is int max && max >= vocabulary.Count ? max + 1
                : vocabulary.Count;
            if (token.Id != expected)
            {
                throw item.Error($"gives '{token.Content}' the id {token.Id}, but Hugging Face's tokenizers load it as {expected} "
                    + $"(the vocabulary has {vocabulary.Count} entries): the file is inconsistent");
            }
            maxAssigned = Math.Max(maxAssigned ?? expected, expected);
            tokens.Add(token);
        }
        return tokens;
    }

    private static AddedToken ReadAddedToken(TokenizerJson token) => new(
        Id: token.Required("id").Int(),
        Content: token.Required("content").String(),
        SingleWord: token.Bool("single_word", false),
        LStrip: token.Bool("lstrip", false),
        RStrip: token.Bool("rstrip", false),
        Normalized: token.Bool("normalized", true),
        Special: token.Bool("special", false));

    private static List<NormalizationForm> ReadNormalizer(TokenizerJson normalizer) =>
        normalizer.Type("Sequence", "NFC", "NFD", "NFKC", "NFKD") switch
        {
            "Sequence" => normalizer.Required("normalizers").Items().SelectMany(ReadNormalizer).ToList(),
            "NFC" => [NormalizationForm.FormC],
            "NFD" => [NormalizationForm.FormD],
            "NFKC" => [NormalizationForm.FormKC],
            _ => [NormalizationForm.FormKD],
        };

    private static List<PreTokenizerStep> ReadPreTokenizer(TokenizerJson step)
    {
        switch (step.Type("Sequence", "Split", "ByteLevel", "Digits"))
        {
            case "Sequence":
                return step.Required("pretokenizers").Items().SelectMany(ReadPreTokenizer).ToList();
            case "ByteLevel":
                return [new ByteLevelStep(step.Bool("add_prefix_space", true), step.Bool("use_regex", true))];
            case "Digits":
                return [new DigitsStep(step.Bool("individual_digits", false))];
        }
        TokenizerJson behaviorJson = step.Required("behavior");
        if (!Enum.TryParse(behaviorJson.String(), out PreTokenizerStep.Behavior behavior))
        {
            throw behaviorJson.Error($"= '{behaviorJson.String()}' is not a split behavior ({string.Join(", ", Enum.GetNames<PreTokenizerStep.Behavior>())})");
        }
        bool invert = step.Bool("invert", false);
        TokenizerJson pattern = step.Required("pattern");
        if (pattern.Field("Regex") is { IsNull: false } regex)
        {
            try
            {
                return [new SplitStep(new CodePointRegex(regex.String()), behavior, invert)];
            }
            catch (FormatException e)
            {
                throw regex.Error(e.Message);
            }
        }
        return pattern.Field("String") is { IsNull: false } literal
            ? [new SplitStep(literal.String(), behavior, invert)]
            : throw pattern.Error("has neither 'Regex' nor 'String'");
    }

    /// <summary>The ids a post-processor puts before and after a single sequence.</summary>
    private static (int[] Prefix, int[] Suffix) ReadPostProcessor(TokenizerJson processor)
    {
        switch (processor.Type("ByteLevel", "TemplateProcessing", "Sequence"))
        {
            case "ByteLevel":
                return ([], []);
            case "Sequence":
                var prefix = new List<int>();
                var suffix = new List<int>();
                foreach (TokenizerJson inner in processor.Required("processors").Items())
                {
                    (int[] p, int[] s) = ReadPostProcessor(inner);
                    prefix.InsertRange(0, p);
                    suffix.AddRange(s);
                }
                return ([.. prefix], [.. suffix]);
        }
        var specialIds = processor.Required("special_tokens").Properties()
            .ToDictionary(p => p.Key, p => p.Value.Required("ids").Items().Select(id => id.Int()).ToArray());
        var before = new List<int>();
        var after = new List<int>();
        bool sequenceSeen = false;
        foreach (TokenizerJson piece in processor.Required("single").Items())
        {
            if (piece.Field("Sequence") is { IsNull: false } sequence)
            {
                if (sequenceSeen || sequence.Required("id").String() != "A")
                {
                    throw sequence.Error("is not the one $A of a single-sequence template");
                }
                sequenceSeen = true;
                continue;
            }
            TokenizerJson special = piece.Required("SpecialToken");
            string name = special.Required("id").String();
            int[] ids = specialIds.TryGetValue(name, out int[]? found) ? found : throw special.Error($"names '{name}', which special_tokens lacks");
            (sequenceSeen ? after : before).AddRange(ids);
        }
        return sequenceSeen ? ([.. before], [.. after]) : throw processor.Required("single").Error("has no $A sequence");
    }
}
