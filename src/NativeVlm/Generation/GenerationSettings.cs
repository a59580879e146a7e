using System.Text.Json;
using NativeVlm.Models;

namespace NativeVlm.Generation;

/// <summary>
/// How one generate call decodes, with transformers' GenerationConfig names: greedy search when
/// <see cref="DoSample"/> is false, else multinomial sampling after the warpers (temperature, top_k,
/// top_p: <see cref="LogitsWarpers"/>). A row stops at its first token in <see cref="EosTokenIds"/> or
/// after <see cref="MaxNewTokens"/>; finished rows of a batch are filled with <see cref="PadTokenId"/>.
/// </summary>
public sealed record GenerationSettings(
    int MaxNewTokens,
    bool DoSample,
    double Temperature,
    int TopK,
    double TopP,
    ulong Seed,
    IReadOnlyList<int> EosTokenIds,
    int PadTokenId)
{
    /// <summary>transformers' GenerationConfig defaults for the sampling knobs.</summary>
    public const double DefaultTemperature = 1.0, DefaultTopP = 1.0;

    public const int DefaultTopK = 50;

    /// <summary>
    /// The number of new tokens when nothing says otherwise: transformers' max_length default of 20,
    /// counted here as new tokens (a VLM prompt alone is longer than 20).
    /// </summary>
    public const int DefaultMaxNewTokens = 20;

    /// <summary>
    /// Throws an <see cref="ArgumentException"/> naming the first value generate would refuse; the sampling
    /// knobs only when sampling, since greedy search adds no warper (transformers merely warns).
    /// </summary>
    public void Validate()
    {
        if (MaxNewTokens <= 0)
        {
            throw new ArgumentException($"max_new_tokens must be positive, not {MaxNewTokens}");
        }
        if (!DoSample)
        {
            return;
        }
        if (!(Temperature > 0) || double.IsInfinity(Temperature))
        {
            throw new ArgumentException($"temperature must be a strictly positive float, not {Temperature}");
        }
        if (TopK < 0)
        {
            throw new ArgumentException($"top_k must be 0 (off) or positive, not {TopK}");
        }
        if (!(TopP >= 0 && TopP <= 1))
        {
            throw new ArgumentException($"top_p must lie in [0, 1], not {TopP}");
        }
    }
}

/// <summary>
/// A snapshot's generation_config.json, the values generate starts from before the caller's own:
/// do_sample, temperature, top_k, top_p, max_new_tokens, eos_token_id (an int or a list) and
/// pad_token_id; null where the file (or the snapshot) has none.
/// </summary>
public sealed record GenerationConfig(
    bool? DoSample,
    double? Temperature,
    int? TopK,
    double? TopP,
    int? MaxNewTokens,
    IReadOnlyList<int>? EosTokenIds,
    int? PadTokenId)
{
    public const string FileName = "generation_config.json";

    public static GenerationConfig Empty { get; } = new(null, null, null, null, null, null, null);

    /// <summary>The snapshot's generation_config.json, or <see cref="Empty"/> when it has none.</summary>
    /// <exception cref="ConfigException">The file is not JSON, or a field has the wrong type.</exception>
    public static GenerationConfig Load(string snapshotDir)
    {
        string path = Path.Combine(snapshotDir, FileName);
        if (!File.Exists(path))
        {
            return Empty;
        }
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new ConfigException(path, "", $"{path}: not valid JSON ({e.Message})");
        }
        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new ConfigException(path, "", $"{path}: must be a JSON object, is a {root.ValueKind}");
            }
            return new GenerationConfig(
                Read(root, path, "do_sample", "true or false", e => e.GetBoolean()),
                Read(root, path, "temperature", "a number", e => e.GetDouble()),
                Read(root, path, "top_k", "an integer", e => e.GetInt32()),
                Read(root, path, "top_p", "a number", e => e.GetDouble()),
                Read(root, path, "max_new_tokens", "an integer", e => e.GetInt32()),
                EosIds(root, path),
                Read(root, path, "pad_token_id", "an integer", e => e.GetInt32()));
        }
    }

    /// <summary>
    /// The eos ids generate stops on: this file's eos_token_id, else config.json's text_config eos
    /// (what transformers' GenerationConfig.from_model_config takes), plus <paramref name="endOfUtterance"/>
    /// (the tokenizer's &lt;end_of_utterance&gt;, which ends SmolVLM's assistant turns) when given.
    /// </summary>
    public IReadOnlyList<int> ResolveEosTokenIds(Idefics3Config model, int? endOfUtterance)
    {
        IEnumerable<int> ids = EosTokenIds ?? model.Text.EosTokenIds;
        return (endOfUtterance is int id ? ids.Append(id) : ids).Distinct().ToList();
    }

    /// <summary>
    /// The pad id of finished rows: this file's pad_token_id, else config.json's text_config one, else
    /// the first eos id (transformers' fallback, with a warning there).
    /// </summary>
    public int ResolvePadTokenId(Idefics3Config model, IReadOnlyList<int> eosTokenIds) =>
        PadTokenId ?? model.Text.PadTokenId ?? (eosTokenIds.Count > 0
            ? eosTokenIds[0]
            : throw new ConfigException(FileName, "pad_token_id", "no pad_token_id and no eos_token_id: finished rows of a batch would have no pad token"));

    private static T? Read<T>(JsonElement root, string path, string key, string expected, Func<JsonElement, T> get)
        where T : struct
    {
        if (!root.TryGetProperty(key, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        try
        {
            return get(value);
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException)
        {
            throw new ConfigException(path, key, $"{path}: {key} must be {expected}, is {value.GetRawText()}");
        }
    }

    private static IReadOnlyList<int>? EosIds(JsonElement root, string path)
    {
        if (!root.TryGetProperty("eos_token_id", out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        try
        {
            return value.ValueKind switch
            {
                JsonValueKind.Number => [value.GetInt32()],
                JsonValueKind.Array => value.EnumerateArray().Select(e => e.GetInt32()).ToList(),
                _ => throw new FormatException($"a JSON {value.ValueKind}"),
            };
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException)
        {
            throw new ConfigException(path, "eos_token_id", $"{path}: eos_token_id must be an int or a list of ints ({e.Message})");
        }
    }
}
