using NativeVlm.Batches;
using NativeVlm.Models;
using NativeVlm.Text;
using NativeVlm.Vision;
using DataMessage = NativeVlm.Data.ChatMessage;
using TemplateMessage = NativeVlm.Text.ChatMessage;

namespace NativeVlm.Generation;

/// <summary>
/// One prompt ready to generate from: where it came from (<see cref="Source"/>: "--prompt", or a file
/// and row), the chat-template render before image expansion (<see cref="Text"/>), its token ids with
/// the images expanded, the processed images, and the dataset's own answer when it has one.
/// </summary>
public sealed record GenerationPrompt(string Source, string Text, int[] InputIds, SampleImages? Images, string? Reference)
{
    /// <summary>A batch of one, unpadded, as the processor returns it for a single sample.</summary>
    public Idefics3Inputs ToInputs() => new(
        Batch: 1,
        SeqLen: InputIds.Length,
        InputIds: InputIds,
        AttentionMask: Enumerable.Repeat((byte)1, InputIds.Length).ToArray(),
        PixelValues: Images?.PixelValues,
        PixelShape: Images is { } images ? [1, images.Frames, 3, images.Height, images.Width] : null,
        PixelAttentionMask: Images?.PixelAttentionMask,
        Labels: null,
        TargetMask: null);
}

/// <summary>
/// Builds <see cref="GenerationPrompt"/>s as transformers' processor does for generate (the seeds'
/// generate_text_from_sample): the messages rendered by the model's chat template with
/// add_generation_prompt, the images decoded and processed as one sample, each image token expanded
/// into its tile tokens, and the text tokenized as processor(text=...) does (add_special_tokens=True;
/// SmolVLM's and Qwen3's tokenizers add nothing, their templates write their own specials).
/// </summary>
public sealed class GenerationPrompts(VlmProcessor processor)
{
    public VlmProcessor Processor { get; } = processor;

    /// <summary>One user message holding the images, then the text (transformers' multimodal chat format).</summary>
    /// <exception cref="ImageInputException">An image file cannot be read or decoded (the message names it).</exception>
    public GenerationPrompt FromImageFiles(IReadOnlyList<string> imagePaths, string prompt)
    {
        List<DecodedImage> images = imagePaths.Select(path => ImageDecoder.DecodeFile(path)).ToList();
        var content = Enumerable.Repeat(Data.ContentItem.ImagePlaceholder, images.Count).Append(Data.ContentItem.FromText(prompt)).ToList();
        return Build("--prompt", [new DataMessage("user", content)], images, reference: null);
    }

    /// <summary>
    /// The prompt of <paramref name="messages"/>, whose image items stand for <paramref name="images"/> in
    /// order. The render must hold one &lt;image&gt; placeholder per image, else an <see cref="ArgumentException"/> names <paramref name="source"/>.
    /// </summary>
    public GenerationPrompt Build(string source, IReadOnlyList<DataMessage> messages, IReadOnlyList<DecodedImage> images, string? reference)
    {
        List<TemplateMessage> conversation = messages
            .Select(m => new TemplateMessage(m.Role, m.Content.Select(item => item.Kind == Data.ContentKind.Image ? ChatPart.Image : ChatPart.FromText(item.Text!)).ToList()))
            .ToList();
        string text = Processor.Template.Render(conversation, addGenerationPrompt: true);
        string imageToken = Processor.Prompt.Tokens.Image;
        int placeholders = text.Split(imageToken).Length - 1;
        if (placeholders != images.Count)
        {
            throw new ArgumentException(
                $"{source}: the rendered prompt holds {placeholders} {imageToken} placeholders and {images.Count} images were given for them");
        }
        SampleImages? processed = images.Count == 0 ? null : SampleImages.From(Processor.ImageProcessor.Process([images]));
        string expanded = processed is null ? text : Processor.Prompt.Expand(text, processed.Rows, processed.Cols);
        return new GenerationPrompt(source, text, Processor.Tokenizer.Encode(expanded, addSpecialTokens: true), processed, reference);
    }
}
