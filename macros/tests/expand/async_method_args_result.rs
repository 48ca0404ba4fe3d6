#[traced(name = "charge card", kind = client, args(all, %currency), skip(card), result(ok), category = dependency)]
pub async fn charge(&self, amount: u64, currency: &str, card: Card) -> Result<Receipt, PaymentError> {
    let receipt = self.gateway.charge(amount, currency, card).await?;
    Ok(receipt)
}
